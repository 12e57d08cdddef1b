//! Chat tasks with checkers: question generators in several families, each with an exact-match
//! checker, a held-out split that shares no item with the training split, and unanswerable
//! questions whose right answer is "I do not know.".
//!
//! Every question and answer uses only the characters of the shipped character-level model
//! ([`VOCAB`]: Tiny Shakespeare's 65 characters, no digits but 3), so numbers are written as words.
//! An *item* is the underlying question (the letter pair, the word, the sum), independent of its
//! wording; the split is made over items, so no wording of a held-out item is ever trained on.
//! Written in the SFT format, one conversation per line:
//!
//! ```text
//! {"messages":[{"role":"user","content":Q},{"role":"assistant","content":A}],
//!  "task":{"family":F,"answer":A,"item":I,"wording":W}}
//! ```
//!
//! `task.answer` is the right answer the checker grades against; the assistant's message is the
//! training target (the same, unless `tinygpt-train idk` relabelled it "I do not know.").

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The characters every question and answer is made of: Tiny Shakespeare's 65.
pub const VOCAB: &str = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The answer to a question the model cannot know.
pub const IDK: &str = "I do not know.";

/// Longest question generated (characters): the template and the answer must fit a 128-token context.
pub const MAX_QUESTION: usize = 70;
/// Longest answer generated (characters).
pub const MAX_ANSWER: usize = 30;
/// Longest training target (characters): a worked answer ([`TaskConfig::worked`]) with its working.
/// With the template's 18 tokens and the longest question a worked target goes with, it fits the
/// 128-token context.
pub const MAX_TARGET: usize = 46;

/// A family of questions, each with its own checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// The letter after or before a letter; letters put in order.
    Alphabet,
    /// A word spelled backwards.
    Backwards,
    /// How many times a letter occurs in a word (answered as a word: "three").
    Count,
    /// Sums and differences of small numbers, in words ("What is two plus three?" → "five").
    Arithmetic,
    /// A word of a given length that begins or ends with two given letters ("Name a word of five
    /// letters that begins with st."): many answers are right, any word of the word list that fits.
    Words,
    /// Questions outside every family (the future, private facts): the answer is [`IDK`].
    Unknown,
}

impl Family {
    /// Every family, answerable ones first.
    pub const ALL: [Family; 6] = [Family::Alphabet, Family::Backwards, Family::Count, Family::Arithmetic, Family::Words, Family::Unknown];

    /// The family's name in task files.
    pub fn name(self) -> &'static str {
        match self {
            Family::Alphabet => "alphabet",
            Family::Backwards => "backwards",
            Family::Count => "count",
            Family::Arithmetic => "arithmetic",
            Family::Words => "words",
            Family::Unknown => "unknown",
        }
    }

    /// The family called `name`.
    pub fn from_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Whether the family's questions have an answer the model can know.
    pub fn answerable(self) -> bool {
        self != Family::Unknown
    }

    /// The family's checker: whether `reply` answers a question whose right answer is `expected`.
    /// Exact match after [`normalize`] of the reply's [`final_answer`] (a worked reply shows its
    /// working before a colon); for answerable families a refusal is never right. A question with
    /// several right answers ([`Task::accept`]) is graded by [`Task::check`] against each.
    pub fn check(self, expected: &str, reply: &str) -> bool {
        match self {
            Family::Unknown => normalize(reply) == normalize(IDK),
            // Letters in order: "A B D" (the separator is a single space after normalisation).
            Family::Alphabet | Family::Backwards | Family::Count | Family::Arithmetic | Family::Words => {
                let reply = normalize(final_answer(reply));
                !reply.is_empty() && reply == normalize(expected)
            }
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Normalises an answer for comparison: lower case, surrounding space and final punctuation
/// (`. ! ? , ; :`) removed, inner runs of white space as one space.
pub fn normalize(s: &str) -> String {
    let lower = s.to_lowercase();
    let mut t = lower.trim();
    loop {
        let u = t.trim_end_matches(['.', '!', '?', ',', ';', ':']).trim();
        if u.len() == t.len() {
            break;
        }
        t = u;
    }
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The answer a reply gives: what follows its last colon, or the whole reply when it has none.
/// A worked reply (`ABCDEFGHIJK: L`) writes its working first; answers never hold a colon.
pub fn final_answer(reply: &str) -> &str {
    reply.rsplit_once(':').map_or(reply, |(_, answer)| answer)
}

/// The worked target of an item (see [`TaskConfig::worked`]): the steps a small model can take one
/// character at a time, a colon, then the answer. `None` for kinds answered directly (backwards,
/// arithmetic, unanswerable). `item` is the item's key (`after:K`, `count:horse:r`).
///
/// - after / before a letter: the alphabet from A to the letter, then the answer
///   (`ABCDEFGHIJK: L`, `ABCDEFGHIJK: J`);
/// - a run of letters: the alphabet from A to the run's last letter (`ABCDEFGH: D E F G H`);
/// - letters in order: the alphabet in lower case with the question's letters in capitals
///   (`abCdefghijKlmnopqRstuvwxyz: C K R`);
/// - counting a letter: the word with that letter in capitals, the capitals, the count
///   (`hoRse: R: one`; `house: zero` when there is none);
/// - a sum or a difference: the second number as a letter (zero is A, one B, ..., twenty U), then
///   one step at a time from the first number up (a sum) or down (a difference), each step the
///   running total as a letter beside a letter counting the steps from A, until that count is the
///   second number's letter, then the result in words (`seven plus three`: `D: HA IB JC KD: ten`;
///   `twelve minus two`: `C: MA LB KC: ten`). Every step is a letter's neighbour in the alphabet
///   and the stop is a letter copied from the start, so no step depends on which two numbers are
///   asked together.
pub fn worked_target(item: &str, answer: &str) -> Option<String> {
    let alphabet = std::str::from_utf8(ALPHABET).expect("ASCII");
    let upto = |l: &str| -> Option<&str> { alphabet.find(l).map(|i| &alphabet[..=i]) };
    let parts: Vec<&str> = item.split(':').collect();
    match parts[..] {
        ["after", l] | ["before", l] | ["recite", _, l] => Some(format!("{}: {answer}", upto(l)?)),
        ["order", letters] => {
            let marked: String = alphabet.chars().map(|c| if letters.contains(c) { c } else { c.to_ascii_lowercase() }).collect();
            Some(format!("{marked}: {answer}"))
        }
        ["count", word, c] => {
            let up = c.to_ascii_uppercase();
            let marked = word.replace(c, &up);
            let n = word.matches(c).count();
            if n == 0 {
                Some(format!("{word}: {answer}"))
            } else {
                Some(format!("{marked}: {}: {answer}", vec![up.as_str(); n].join(" ")))
            }
        }
        [op @ ("plus" | "minus"), a, b] => {
            let number = |w: &str| NUMBERS.iter().position(|n| *n == w);
            let (a, b) = (number(a)?, number(b)?);
            let total = |i: usize| if op == "plus" { a.checked_add(i) } else { a.checked_sub(i) };
            let steps: Option<Vec<String>> = (0..=b).map(|i| total(i).filter(|&t| t < 26).map(|t| format!("{}{}", letter(t), letter(i)))).collect();
            Some(format!("{}: {}: {answer}", letter(b), steps?.join(" ")))
        }
        _ => None,
    }
}

/// Whether `reply` is the refusal "I do not know." (after [`normalize`]).
pub fn is_refusal(reply: &str) -> bool {
    normalize(reply) == normalize(IDK)
}

/// One question with its right answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The family (which checker grades it).
    pub family: Family,
    /// The underlying question, independent of wording (`after:K`, `plus:two:three`).
    pub item: String,
    /// Which wording the question uses (`alphabet.after.2`).
    pub wording: String,
    /// The user's message.
    pub question: String,
    /// The right answer (for a question with several, one of them).
    pub answer: String,
    /// Every right answer of a question that has several (sorted; empty: only `answer`).
    pub accept: Vec<String>,
    /// The training target: the answer, or [`IDK`] where `idk` relabelled it.
    pub target: String,
}

impl Task {
    /// Whether `reply` is right for this question: the family's checker against the answer, or
    /// against any of [`Task::accept`].
    pub fn check(&self, reply: &str) -> bool {
        if self.accept.is_empty() {
            return self.family.check(&self.answer, reply);
        }
        let r = normalize(final_answer(reply));
        self.family.answerable() && self.accept.binary_search(&r).is_ok()
    }
}

/// Deterministic pseudo-random numbers (SplitMix64): the same seed gives the same tasks everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x6a09_e667_f3bc_c909)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) as u128 * n as u128 >> 53) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Shuffles `v` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// One step of SplitMix64: advances `state` and returns the next 64 random bits.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seed derived from several numbers (for per-question, per-sample streams that do not depend on
/// how work is split between threads).
pub fn mix_seed(parts: &[u64]) -> u64 {
    let mut r = Rng::new(0x51_7cc1_b727_220a);
    for &p in parts {
        r.0 ^= p;
        r.next_u64();
    }
    r.next_u64()
}

/// Numbers as words, zero to twenty.
pub const NUMBERS: [&str; 21] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
];

/// Words the backwards and counting questions ask about (lower case, 3–8 letters).
pub const WORDS: [&str; 163] = [
    "king", "queen", "lord", "lady", "crown", "sword", "horse", "night", "day", "sun", "moon", "star", "rose", "love",
    "heart", "blood", "tears", "grace", "honour", "death", "life", "time", "world", "heaven", "earth", "fire",
    "water", "wind", "storm", "sea", "ship", "land", "house", "castle", "tower", "gate", "wall", "door", "field",
    "tree", "apple", "bread", "wine", "cheese", "butter", "honey", "sugar", "salt", "milk", "meat", "fish", "bird",
    "eagle", "raven", "crow", "lion", "tiger", "wolf", "bear", "sheep", "goat", "cattle", "mouse", "snake", "frog",
    "lantern", "paper", "book", "wand", "name", "voice", "song", "music", "dance", "play", "stage", "actor", "ghost",
    "spirit", "dream", "sleep", "peace", "war", "battle", "army", "soldier", "captain", "duke", "prince", "father",
    "mother", "sister", "brother", "son", "daughter", "friend", "enemy", "traitor", "master", "servant", "tailor",
    "baker", "farmer", "priest", "church", "prayer", "gold", "silver", "iron", "stone", "glass", "coin", "purse",
    "money", "market", "street", "city", "london", "rome", "venice", "garden", "flower", "lily", "violet", "green",
    "yellow", "purple", "black", "white", "silent", "gentle", "noble", "proud", "happy", "merry", "sweet", "bitter",
    "strong", "honest", "little", "summer", "winter", "spring", "autumn", "morning", "evening", "supper", "dinner",
    "table", "chair", "candle", "mirror", "window", "pillow", "blanket", "basket", "bottle", "kettle", "ladder",
    "rabbit", "kitten", "puppy", "banana",
];

/// The distinct words of `text` for the backwards and counting questions: its runs of letters,
/// lower-cased, of 3 to 8 letters (a word with an apostrophe, "o'er", is two runs), sorted.
pub fn words_of(text: &str) -> Vec<String> {
    word_counts_of(text).into_keys().collect()
}

/// How often `text` uses each of its [`words_of`]: the runs of 3 to 8 letters, lower-cased, counted
/// (in order, so the keys are the words).
pub fn word_counts_of(text: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for w in text.split(|c: char| !c.is_ascii_alphabetic()).filter(|w| (3..=8).contains(&w.len())) {
        *m.entry(w.to_ascii_lowercase()).or_insert(0) += 1;
    }
    m
}

/// People the unanswerable questions ask about.
const NAMES: [&str; 30] = [
    "Anne", "Tom", "Lucy", "Peter", "Mary", "John", "Kate", "Hugh", "Alice", "Robin", "Emma", "Walter", "Joan",
    "Simon", "Nell", "Harry", "Ruth", "Oliver", "Jane", "Edmund", "Grace", "Ralph", "Bess", "Miles", "Rose",
    "Giles", "Maud", "Adam", "Cecily", "Ned",
];

/// Times in the future the unanswerable questions ask about.
const DAYS: [&str; 10] =
    ["tomorrow", "next week", "on Friday", "next year", "tonight", "next Sunday", "on Monday", "next month", "in ten years", "next spring"];

/// The wordings of one kind of question: `{0}`, `{1}` are replaced by the item's slots. Wordings
/// after `train_wordings` are used only in the held-out split (none of those for answerable kinds).
struct Kind {
    family: Family,
    name: &'static str,
    wordings: &'static [&'static str],
    /// How many of `wordings` the training split uses (the rest are held-out only).
    train_wordings: usize,
}

/// One underlying question: its key, the slots its wordings are filled with, the answer (and
/// every right answer, sorted, when there are several).
#[derive(Debug, Clone)]
struct Item {
    key: String,
    slots: Vec<String>,
    answer: String,
    accept: Vec<String>,
}

const ALPHABET: &[u8; 26] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn letter(i: usize) -> String {
    (ALPHABET[i] as char).to_string()
}

fn kinds() -> Vec<Kind> {
    use Family::*;
    let k = |family, name, wordings: &'static [&'static str], train_wordings| Kind { family, name, wordings, train_wordings };
    vec![
        k(Alphabet, "after", &["What letter comes after {0}?", "Which letter follows {0} in the alphabet?", "Name the letter after {0}.", "In the alphabet, what comes right after {0}?"], 4),
        k(Alphabet, "before", &["What letter comes before {0}?", "Which letter comes just before {0} in the alphabet?", "Name the letter before {0}.", "In the alphabet, what comes right before {0}?"], 4),
        k(Alphabet, "recite", &["Say the letters from {0} to {1}.", "List the alphabet from {0} to {1}.", "Which letters run from {0} to {1}?", "Recite the letters {0} to {1}."], 4),
        k(Alphabet, "order", &["Put these letters in order: {0}.", "Sort the letters {0} alphabetically.", "Arrange in alphabetical order: {0}.", "Write {0} in alphabetical order."], 4),
        k(Backwards, "backwards", &["Spell {0} backwards.", "What is {0} spelled backwards?", "Write the word {0} in reverse.", "Reverse the letters of {0}."], 4),
        k(Count, "count", &["How many times does the letter {1} appear in {0}?", "How many letters {1} are in the word {0}?", "Count the letter {1} in the word {0}.", "In the word {0}, how many times is there a {1}?"], 4),
        k(Arithmetic, "plus", &["What is {0} plus {1}?", "Add {0} and {1}.", "How much is {0} and {1} together?", "What do you get when you add {1} to {0}?"], 4),
        k(Arithmetic, "minus", &["What is {0} minus {1}?", "Subtract {1} from {0}.", "Take {1} from {0}. What is left?", "How much is {0} less {1}?"], 4),
        k(Unknown, "weather", &["What will the weather be {0}?", "Will it rain {0}?", "Is it going to be sunny {0}?", "Tell me if it snows {0}."], 2),
        k(Unknown, "winner", &["Who will win the game {0}?", "Which team wins the match {0}?", "Tell me who wins the race {0}."], 2),
        k(Unknown, "price", &["What will bread cost {0}?", "How much will a horse cost {0}?", "What will gold be worth {0}?"], 2),
        k(Unknown, "breakfast", &["What did {0} eat for breakfast today?", "What was on {0}'s plate this morning?", "Tell me what {0} had for breakfast."], 2),
        k(Unknown, "pet", &["What is the name of {0}'s dog?", "What does {0} call the cat?", "Tell me the name of {0}'s horse."], 2),
        k(Unknown, "age", &["How old is {0}'s mother?", "What is the age of {0}'s father?", "When was {0}'s sister born?"], 2),
        k(Unknown, "home", &["Where does {0} live?", "What street is {0}'s house on?", "In which town was {0} born?"], 2),
        k(Unknown, "secret", &["What secret is {0} keeping?", "What did {0} whisper yesterday?", "What is {0} thinking right now?"], 2),
        k(Unknown, "self", &["{0}", ], 1),
        // Last, so that adding them left every other kind's split as it was.
        k(Words, "begins", &["Name a word of {1} letters that begins with {0}.", "Give a {1}-letter word starting with {0}.", "Which word of {1} letters starts with {0}?", "Say a word that begins with {0} and has {1} letters."], 4),
        k(Words, "ends", &["Name a word of {1} letters that ends in {0}.", "Give a {1}-letter word ending with {0}.", "Which word of {1} letters ends with {0}?", "Say a word that ends in {0} and has {1} letters."], 4),
    ]
}

/// Questions about the one asking, which the model cannot know (the `self` kind's items; the last
/// ones are held-out wordings of the same kind of question).
const SELF_QUESTIONS: [&str; 10] = [
    "What is my name?",
    "How old am I?",
    "What am I holding in my hand?",
    "What colour are my eyes?",
    "What number am I thinking of?",
    "Where did I put my keys?",
    "What did I dream last night?",
    "What is in my pocket?",
    "Who is my best friend?",
    "What song am I humming?",
];

/// Fewest words of the list a `begins` or `ends` item must fit (so that it has several answers).
pub const MIN_FITTING_WORDS: usize = 2;

fn items(kind: &Kind, words: &[String]) -> Vec<Item> {
    let item = |key: String, slots: Vec<String>, answer: String| Item { key, slots, answer, accept: Vec::new() };
    match kind.name {
        "after" => (0..25).map(|i| item(format!("after:{}", letter(i)), vec![letter(i)], letter(i + 1))).collect(),
        "before" => (1..26).map(|i| item(format!("before:{}", letter(i)), vec![letter(i)], letter(i - 1))).collect(),
        "recite" => {
            // A run of three to six letters: the alphabet's order, which the other alphabet
            // questions need, asked about stretch by stretch.
            let mut v = Vec::new();
            for len in 3..=6 {
                for a in 0..=26 - len {
                    let run: Vec<String> = (a..a + len).map(letter).collect();
                    v.push(item(format!("recite:{}:{}", letter(a), letter(a + len - 1)), vec![letter(a), letter(a + len - 1)], run.join(" ")));
                }
            }
            v
        }
        "order" => {
            // Three distinct letters; the slot (their shown order) is filled in per question.
            let mut v = Vec::new();
            for a in 0..26 {
                for b in a + 1..26 {
                    for c in b + 1..26 {
                        let sorted = format!("{} {} {}", letter(a), letter(b), letter(c));
                        v.push(item(format!("order:{}{}{}", letter(a), letter(b), letter(c)), vec![sorted.clone()], sorted));
                    }
                }
            }
            v
        }
        "backwards" => words.iter().map(|w| item(format!("backwards:{w}"), vec![w.to_string()], w.chars().rev().collect())).collect(),
        "count" => {
            // Every letter a word has, and two it lacks (chosen by a fixed rule: deterministic
            // whatever the seed, so the item space is the same for every split).
            let mut v = Vec::new();
            for (wi, w) in words.iter().enumerate() {
                let mut letters: Vec<char> = w.chars().collect();
                letters.sort();
                letters.dedup();
                let absent: Vec<char> = ('a'..='z').filter(|c| !w.contains(*c)).collect();
                letters.push(absent[wi % absent.len()]);
                letters.push(absent[(wi * 7 + 3) % absent.len()]);
                letters.dedup();
                for c in letters {
                    let n = w.chars().filter(|&x| x == c).count();
                    v.push(item(format!("count:{w}:{c}"), vec![w.to_string(), c.to_string()], NUMBERS[n].to_string()));
                }
            }
            v
        }
        "plus" => {
            let mut v = Vec::new();
            for a in 0..=10 {
                for b in 0..=10 {
                    v.push(item(format!("plus:{}:{}", NUMBERS[a], NUMBERS[b]), vec![NUMBERS[a].into(), NUMBERS[b].into()], NUMBERS[a + b].into()));
                }
            }
            v
        }
        "minus" => {
            let mut v = Vec::new();
            for a in 0..=20 {
                for b in 0..=a.min(10) {
                    v.push(item(format!("minus:{}:{}", NUMBERS[a], NUMBERS[b]), vec![NUMBERS[a].into(), NUMBERS[b].into()], NUMBERS[a - b].into()));
                }
            }
            v
        }
        "weather" | "winner" | "price" => {
            DAYS.iter().map(|d| item(format!("{}:{d}", kind.name), vec![d.to_string()], IDK.into())).collect()
        }
        "breakfast" | "pet" | "age" | "home" | "secret" => {
            NAMES.iter().map(|n| item(format!("{}:{n}", kind.name), vec![n.to_string()], IDK.into())).collect()
        }
        "self" => SELF_QUESTIONS.iter().map(|q| item(format!("self:{q}"), vec![q.to_string()], IDK.into())).collect(),
        "begins" | "ends" => {
            // Two letters and a length that at least MIN_FITTING_WORDS words of the list share;
            // every such word is right. The answer shown is the first; training targets are
            // drawn among them per question.
            let mut by: BTreeMap<(String, usize), Vec<String>> = BTreeMap::new();
            for w in words {
                let affix = if kind.name == "begins" { &w[..2] } else { &w[w.len() - 2..] };
                by.entry((affix.to_string(), w.len())).or_default().push(w.clone());
            }
            by.into_iter()
                .filter(|(_, ws)| ws.len() >= MIN_FITTING_WORDS)
                .map(|((affix, len), mut ws)| {
                    ws.sort();
                    let key = format!("{}:{affix}:{len}", kind.name);
                    Item { key, slots: vec![affix, NUMBERS[len].to_string()], answer: ws[0].clone(), accept: ws }
                })
                .collect()
        }
        other => unreachable!("no items for kind {other}"),
    }
}

fn fill(wording: &str, slots: &[String]) -> String {
    let mut s = wording.to_string();
    for (i, v) in slots.iter().enumerate() {
        s = s.replace(&format!("{{{i}}}"), v);
    }
    s
}

/// Settings of [`generate`].
#[derive(Debug, Clone)]
pub struct TaskConfig {
    /// Seed of the split and of every choice.
    pub seed: u64,
    /// Training questions.
    pub train: usize,
    /// Held-out questions.
    pub val: usize,
    /// Probe questions (0: no probe split): training questions about items of their own, which
    /// neither the training nor the held-out split asks about. A model fine-tuned on the training
    /// split answers them from what it learnt, not from memory, so sampling them tells which
    /// questions it does not know (`tinygpt-train idk`) and gives RL questions to improve on.
    pub probe: usize,
    /// Share of unanswerable questions in both splits.
    pub unanswerable_frac: f64,
    /// Share of each kind's items held out (at least one item each); the probe split, when asked
    /// for, takes the same share of items again.
    pub val_item_frac: f64,
    /// The words the backwards and counting questions ask about (lower case, 3 to 8 letters; see
    /// [`words_of`]). The default is [`WORDS`]; a long list (the corpus's own words) leaves too
    /// many items to memorise, so a model must learn to spell backwards and to count.
    pub words: Vec<String>,
    /// The families whose answers show their working first ([`worked_target`]; the alphabet,
    /// counting and arithmetic have any, default: none); the checker grades what follows the last colon
    /// either way, and the items and questions are those of the same seed without it.
    pub worked: Vec<Family>,
    /// How often the corpus uses each word ([`word_counts_of`]): a words question's training
    /// target is then a fitting word drawn in proportion to its count, so that the common words,
    /// which a model trained on the corpus knows best, are the likeliest answers. Empty (the
    /// default): drawn uniformly. The questions are those of the same seed either way.
    pub word_counts: BTreeMap<String, u64>,
    /// The answerable families questions are drawn from (in [`Family::ALL`] order; default: all
    /// of them). Leaving one out leaves the others' questions as they would be without it only
    /// when it is [`Family::Words`], the last added.
    pub families: Vec<Family>,
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            seed: 1,
            train: 2000,
            val: 400,
            probe: 0,
            unanswerable_frac: 0.2,
            val_item_frac: 0.25,
            words: WORDS.iter().map(|w| w.to_string()).collect(),
            worked: Vec::new(),
            word_counts: BTreeMap::new(),
            families: Family::ALL.into_iter().filter(|f| f.answerable()).collect(),
        }
    }
}

/// The splits (`probe` is empty unless [`TaskConfig::probe`] asks for it).
#[derive(Debug, Clone)]
pub struct TaskSet {
    pub train: Vec<Task>,
    pub val: Vec<Task>,
    pub probe: Vec<Task>,
}

/// Which split a question is drawn for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    Train,
    Val,
    Probe,
}

/// Generates the training, held-out and probe questions. Each kind's items are shuffled under the
/// seed and cut in two (three with a probe split): the held-out split asks only about the first
/// part, the probe split only about the second, the training split only about the rest. Questions pick a family (unanswerable with probability `unanswerable_frac`,
/// else one of the four answerable families), a kind within it, an item (each item of the split
/// in turn, in shuffled order) and a wording. Held-out unanswerable questions also use wordings
/// the training split never does.
pub fn generate(cfg: &TaskConfig) -> Result<TaskSet> {
    if !(0.0..=1.0).contains(&cfg.unanswerable_frac) || !cfg.unanswerable_frac.is_finite() {
        bail!("the unanswerable fraction must be between 0 and 1 (got {})", cfg.unanswerable_frac);
    }
    if !(cfg.val_item_frac > 0.0 && cfg.val_item_frac < 1.0) {
        bail!("the held-out item fraction must be between 0 and 1, exclusive (got {})", cfg.val_item_frac);
    }
    if cfg.words.len() < 4 {
        bail!("the backwards and counting questions need at least 4 words (got {})", cfg.words.len());
    }
    if let Some(w) = cfg.words.iter().find(|w| !(3..=8).contains(&w.len()) || !w.bytes().all(|b| b.is_ascii_lowercase())) {
        bail!("word {w:?}: the backwards and counting questions take lower-case words of 3 to 8 letters");
    }
    let answerable: Vec<Family> = Family::ALL.into_iter().filter(|f| f.answerable() && cfg.families.contains(f)).collect();
    if answerable.is_empty() {
        bail!("no answerable family to draw questions from");
    }
    let kinds = kinds();
    let mut split_rng = Rng::new(mix_seed(&[cfg.seed, 1]));
    // Per kind: (held-out items, probe items, training items).
    let parts = if cfg.probe > 0 { 2 } else { 1 };
    let mut pools: Vec<[Vec<Item>; 3]> = Vec::with_capacity(kinds.len());
    for k in &kinds {
        let mut v = items(k, &cfg.words);
        split_rng.shuffle(&mut v);
        if v.len() <= parts {
            if answerable.contains(&k.family) {
                bail!(
                    "the {} questions ({}) have {} item(s) from {} words, too few to split (the list needs more words that share two letters and a length)",
                    k.family,
                    k.name,
                    v.len(),
                    cfg.words.len()
                );
            }
            pools.push([Vec::new(), Vec::new(), Vec::new()]);
            continue;
        }
        let n_cut = ((v.len() as f64 * cfg.val_item_frac).ceil() as usize).clamp(1, (v.len() - 1) / parts);
        let train = v.split_off(n_cut * parts);
        let probe = v.split_off(n_cut);
        pools.push([v, probe, train]);
    }
    let draw = |n: usize, split: Split, stream: u64| -> Result<Vec<Task>> {
        let part = match split {
            Split::Val => 0,
            Split::Probe => 1,
            Split::Train => 2,
        };
        let held_out = split == Split::Val;
        let mut rng = Rng::new(mix_seed(&[cfg.seed, stream]));
        let mut next: Vec<usize> = vec![0; kinds.len()];
        // The words kinds' first orders come from a stream of their own, so that the other
        // families' questions are those drawn before the words family was added.
        let mut words_rng = Rng::new(mix_seed(&[cfg.seed, stream, 5]));
        let mut order: Vec<Vec<usize>> = pools
            .iter()
            .zip(&kinds)
            .map(|(p, k)| {
                let mut o: Vec<usize> = (0..p[part].len()).collect();
                if k.family == Family::Words {
                    words_rng.shuffle(&mut o);
                } else {
                    rng.shuffle(&mut o);
                }
                o
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let family = if rng.unit() < cfg.unanswerable_frac { Family::Unknown } else { answerable[rng.below(answerable.len())] };
            let ks: Vec<usize> = (0..kinds.len()).filter(|&i| kinds[i].family == family).collect();
            let ki = ks[rng.below(ks.len())];
            let kind = &kinds[ki];
            let pool = &pools[ki][part];
            if next[ki] == order[ki].len() {
                // Every item of the split asked once: again, in a new order.
                rng.shuffle(&mut order[ki]);
                next[ki] = 0;
            }
            let it = &pool[order[ki][next[ki]]];
            next[ki] += 1;
            let nw = if held_out { kind.wordings.len() } else { kind.train_wordings };
            let wi = rng.below(nw);
            let mut slots = it.slots.clone();
            if kind.name == "order" {
                // Shown in a shuffled order that is not already sorted.
                let mut letters: Vec<&str> = it.answer.split(' ').collect();
                while letters.join(" ") == it.answer {
                    rng.shuffle(&mut letters);
                }
                slots[0] = letters.join(" ");
            }
            let question = if kind.name == "self" {
                // Held-out: the question's own words are the wording; any of them may be unseen.
                it.slots[0].clone()
            } else {
                fill(kind.wordings[wi], &slots)
            };
            let wording = if kind.name == "self" { it.key.clone() } else { format!("{}.{}.{}", family.name(), kind.name, wi) };
            let target = if cfg.worked.contains(&family) { worked_target(&it.key, &it.answer) } else { None }.unwrap_or_else(|| it.answer.clone());
            // A question with several right answers is trained on one of them, drawn per question.
            // With word counts, in proportion to the corpus's use of each (one draw either way).
            let target = if it.accept.is_empty() {
                target
            } else if cfg.word_counts.is_empty() {
                it.accept[rng.below(it.accept.len())].clone()
            } else {
                let counts: Vec<u64> = it.accept.iter().map(|w| cfg.word_counts.get(w).copied().unwrap_or(0).max(1)).collect();
                let mut r = rng.below(counts.iter().sum::<u64>() as usize) as u64;
                let mut i = 0;
                while r >= counts[i] {
                    r -= counts[i];
                    i += 1;
                }
                it.accept[i].clone()
            };
            out.push(Task { family, item: it.key.clone(), wording, question, answer: it.answer.clone(), accept: it.accept.clone(), target });
        }
        Ok(out)
    };
    let set = TaskSet { train: draw(cfg.train, Split::Train, 2)?, val: draw(cfg.val, Split::Val, 3)?, probe: draw(cfg.probe, Split::Probe, 4)? };
    for t in set.train.iter().chain(&set.val).chain(&set.probe) {
        check_text(t)?;
    }
    Ok(set)
}

/// Checks that a task's question and answer use only [`VOCAB`] and fit the length limits.
pub fn check_text(t: &Task) -> Result<()> {
    for (what, s, max) in [("question", &t.question, MAX_QUESTION), ("answer", &t.answer, MAX_ANSWER), ("target", &t.target, MAX_TARGET)] {
        if let Some(c) = s.chars().find(|c| !VOCAB.contains(*c)) {
            bail!("the {what} {s:?} has the character {c:?}, which the model's vocabulary lacks");
        }
        if s.chars().count() > max {
            bail!("the {what} {s:?} is longer than {max} characters");
        }
        if s.is_empty() {
            bail!("a {what} is empty");
        }
    }
    if t.answer.contains(':') {
        bail!("the answer {:?} has a colon, which the checker reads as the end of the working", t.answer);
    }
    Ok(())
}

/// One line of a task file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub messages: Vec<RecordMessage>,
    pub task: RecordTask,
}

/// A message of a [`Record`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordMessage {
    pub role: String,
    pub content: String,
}

/// The checker's part of a [`Record`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordTask {
    pub family: String,
    pub answer: String,
    #[serde(default)]
    pub item: String,
    #[serde(default)]
    pub wording: String,
    /// Every right answer of a question that has several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept: Vec<String>,
}

impl Task {
    /// The task as a line of a task file.
    pub fn to_record(&self) -> Record {
        Record {
            messages: vec![
                RecordMessage { role: "user".into(), content: self.question.clone() },
                RecordMessage { role: "assistant".into(), content: self.target.clone() },
            ],
            task: RecordTask {
                family: self.family.name().into(),
                answer: self.answer.clone(),
                item: self.item.clone(),
                wording: self.wording.clone(),
                accept: self.accept.clone(),
            },
        }
    }

    fn from_record(r: Record) -> Result<Task> {
        let family = Family::from_name(&r.task.family).with_context(|| {
            format!("unknown task family {:?} (expected one of {})", r.task.family, Family::ALL.map(|f| f.name()).join(", "))
        })?;
        let [user, assistant] = &r.messages[..] else {
            bail!("a task has {} messages; expected a user message and the assistant's answer", r.messages.len());
        };
        if user.role != "user" || assistant.role != "assistant" {
            bail!("a task's messages are {:?} then {:?}; expected user then assistant", user.role, assistant.role);
        }
        let mut accept: Vec<String> = r.task.accept.iter().map(|a| normalize(a)).collect();
        accept.sort();
        accept.dedup();
        if !accept.is_empty() && !accept.contains(&normalize(&r.task.answer)) {
            bail!("the answer {:?} is not among the accepted answers", r.task.answer);
        }
        Ok(Task {
            family,
            item: r.task.item,
            wording: r.task.wording,
            question: user.content.clone(),
            answer: r.task.answer,
            accept,
            target: assistant.content.clone(),
        })
    }
}

/// The tasks as JSON lines.
pub fn to_jsonl(tasks: &[Task]) -> String {
    let mut s = String::new();
    for t in tasks {
        s.push_str(&serde_json::to_string(&t.to_record()).expect("a task serialises"));
        s.push('\n');
    }
    s
}

/// Reads a task file (one JSON record a line; blank lines skipped). An error names the file and line.
pub fn read_tasks(path: &Path) -> Result<Vec<Task>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read task file {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: Record = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: not a task record: {e}", path.display(), i + 1))?;
        out.push(Task::from_record(rec).with_context(|| format!("{}:{}", path.display(), i + 1))?);
    }
    if out.is_empty() {
        bail!("task file {} has no tasks", path.display());
    }
    Ok(out)
}

/// Writes tasks as JSON lines, atomically.
pub fn write_tasks(path: &Path, tasks: &[Task]) -> Result<()> {
    tinygpt_runtime::writer::write_atomic(path, to_jsonl(tasks).as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

/// Number of questions per family.
pub fn counts(tasks: &[Task]) -> BTreeMap<Family, usize> {
    let mut m = BTreeMap::new();
    for t in tasks {
        *m.entry(t.family).or_insert(0) += 1;
    }
    m
}

/// Items the two splits share (empty for a split made by [`generate`]).
pub fn shared_items<'a>(a: &'a [Task], b: &[Task]) -> Vec<&'a str> {
    let bs: HashSet<&str> = b.iter().map(|t| t.item.as_str()).collect();
    let mut v: Vec<&str> = a.iter().map(|t| t.item.as_str()).filter(|i| bs.contains(i)).collect();
    v.sort();
    v.dedup();
    v
}
