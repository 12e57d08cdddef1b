//! Chat tasks: generators and checkers, the held-out split, the vocabulary, evaluation metrics,
//! "I do not know" relabelling, and the `tasks` / `chat-eval` / `idk` commands.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::process::Command;

use tinygpt_train::evalchat::{self, Answerer, EvalOptions, Job, QuestionResult, RuntimeAnswerer};
use tinygpt_train::tasks::{self, normalize, Family, Task, TaskConfig, IDK};

fn set(seed: u64) -> tasks::TaskSet {
    tasks::generate(&TaskConfig { seed, train: 3000, val: 600, ..TaskConfig::default() }).expect("generate")
}

const NUMBER_WORDS: [&str; 21] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
];

fn words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_ascii_alphabetic()).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

/// Answers a question from its text alone (an oracle independent of the generator), with a key for
/// the underlying question; `None` for an unanswerable one.
fn oracle(family: Family, q: &str) -> Option<(String, String)> {
    let w = words(q);
    match family {
        Family::Alphabet => {
            let letters: Vec<char> = w.iter().filter(|t| t.len() == 1 && t.chars().all(|c| c.is_ascii_uppercase())).map(|t| t.chars().next().unwrap()).collect();
            if w.iter().any(|t| t == "after" || t == "follows") {
                assert_eq!(letters.len(), 1, "{q}");
                Some((((letters[0] as u8) + 1) as char).to_string()).map(|a| (a, format!("after {}", letters[0])))
            } else if w.iter().any(|t| t == "to") {
                // A run of letters, from the first to the second.
                assert_eq!(letters.len(), 2, "{q}");
                let run: Vec<String> = (letters[0]..=letters[1]).map(|c| c.to_string()).collect();
                assert!(run.len() >= 3, "{q}");
                Some((run.join(" "), format!("run {}{}", letters[0], letters[1])))
            } else if w.iter().any(|t| t == "before") {
                assert_eq!(letters.len(), 1, "{q}");
                Some((((letters[0] as u8) - 1) as char).to_string()).map(|a| (a, format!("before {}", letters[0])))
            } else {
                assert_eq!(letters.len(), 3, "{q}");
                let mut s = letters.clone();
                s.sort();
                let a: Vec<String> = s.iter().map(|c| c.to_string()).collect();
                Some((a.join(" "), format!("order {}", a.concat())))
            }
        }
        Family::Backwards => {
            // The word asked about is the one word of the question that is not part of any wording.
            let template: HashSet<&str> = ["Spell", "backwards", "What", "is", "spelled", "Write", "the", "word", "in", "reverse", "Reverse", "letters", "of"].into();
            let ws: Vec<&String> = w.iter().filter(|t| !template.contains(t.as_str())).collect();
            let word = if ws.len() == 1 { ws[0].clone() } else { w[w.len() - 1].clone() };
            Some((word.chars().rev().collect(), format!("backwards {word}")))
        }
        Family::Count => {
            let letter = w.iter().rev().find(|t| t.len() == 1 && t.chars().all(|c| c.is_ascii_lowercase())).expect("a letter").clone();
            let word = match w.iter().position(|t| t == "word") {
                Some(i) => w[i + 1].clone(),
                None => w[w.len() - 1].clone(),
            };
            let n = word.matches(letter.as_str()).count();
            Some((NUMBER_WORDS[n].to_string(), format!("count {letter} in {word}")))
        }
        Family::Arithmetic => {
            let nums: Vec<usize> = w.iter().filter_map(|t| NUMBER_WORDS.iter().position(|n| n == t)).collect();
            assert_eq!(nums.len(), 2, "{q}");
            let lw: Vec<String> = w.iter().map(|t| t.to_lowercase()).collect();
            let has = |s: &str| lw.iter().any(|t| t == s);
            if has("minus") || has("less") {
                Some((NUMBER_WORDS[nums[0] - nums[1]].into(), format!("{} - {}", nums[0], nums[1])))
            } else if has("subtract") || has("take") {
                Some((NUMBER_WORDS[nums[1] - nums[0]].into(), format!("{} - {}", nums[1], nums[0])))
            } else {
                let (a, b) = if has("to") { (nums[1], nums[0]) } else { (nums[0], nums[1]) };
                Some((NUMBER_WORDS[a + b].into(), format!("{a} + {b}")))
            }
        }
        Family::Words => {
            let (affix, len, begins) = words_question(q);
            let fit = fitting_words(tasks::WORDS.iter().copied(), &affix, len, begins);
            Some((fit[0].clone(), format!("{} {affix} {len}", if begins { "begins" } else { "ends" })))
        }
        Family::Unknown => None,
    }
}

/// The two letters, the length and whether the word begins (else ends) with them, read from a
/// words question's text.
fn words_question(q: &str) -> (String, usize, bool) {
    let w = words(q);
    // The two letters follow "with" or "in" ("begins with st", "ends in ed").
    let at = w.iter().position(|t| t == "with" || t == "in").unwrap_or_else(|| panic!("{q}"));
    let affix = w[at + 1].clone();
    assert!(affix.len() == 2 && affix.chars().all(|c| c.is_ascii_lowercase()), "{q}");
    let len = w.iter().find_map(|t| NUMBER_WORDS.iter().position(|n| n == t)).unwrap_or_else(|| panic!("{q}"));
    let begins = w.iter().any(|t| ["begins", "starting", "starts"].contains(&t.as_str()));
    let ends = w.iter().any(|t| ["ends", "ending"].contains(&t.as_str()));
    assert!(begins != ends, "{q}");
    (affix, len, begins)
}

/// The words of `list` of `len` letters that begin (or end) with `affix`, sorted.
fn fitting_words<'a>(list: impl Iterator<Item = &'a str>, affix: &str, len: usize, begins: bool) -> Vec<String> {
    let mut v: Vec<String> =
        list.filter(|w| w.len() == len && if begins { w.starts_with(affix) } else { w.ends_with(affix) }).map(str::to_string).collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn every_family_is_generated_and_its_answers_match_an_independent_oracle() {
    let s = set(7);
    let fams: BTreeSet<Family> = s.train.iter().chain(&s.val).map(|t| t.family).collect();
    assert_eq!(fams.len(), 6, "all six families appear: {fams:?}");
    for t in s.train.iter().chain(&s.val) {
        match oracle(t.family, &t.question) {
            Some((a, _)) => assert_eq!(t.answer, a, "{t:?}"),
            None => assert_eq!(t.answer, IDK, "{t:?}"),
        }
        if t.family == Family::Words {
            // Every fitting word of the list is right, and there are at least two; the target is
            // one of them.
            let (affix, len, begins) = words_question(&t.question);
            let fit = fitting_words(tasks::WORDS.iter().copied(), &affix, len, begins);
            assert!(fit.len() >= tasks::MIN_FITTING_WORDS, "{t:?}");
            assert_eq!(t.accept, fit, "{t:?}");
            assert!(t.accept.contains(&t.target), "{t:?}");
        } else {
            assert!(t.accept.is_empty(), "{t:?}");
            assert_eq!(t.target, t.answer);
        }
    }
    // The words family's targets vary over the right answers of an item.
    let mut targets: HashMap<&str, HashSet<&str>> = HashMap::new();
    for t in s.train.iter().filter(|t| t.family == Family::Words) {
        targets.entry(t.item.as_str()).or_default().insert(t.target.as_str());
    }
    assert!(targets.values().any(|v| v.len() >= 2), "{targets:?}");
    // Several wordings per family.
    for f in Family::ALL {
        let w: HashSet<&str> = s.train.iter().filter(|t| t.family == f).map(|t| t.wording.as_str()).collect();
        assert!(w.len() >= 3, "{f}: {} wordings", w.len());
    }
    // The kinds of the alphabet family all appear.
    for k in ["after", "before", "order"] {
        assert!(s.train.iter().any(|t| t.wording.starts_with(&format!("alphabet.{k}."))), "{k}");
    }
}

/// Checks a worked target's working against the question by rules of its own (not the
/// generator's): the alphabet up to the letter asked about, the alphabet with the question's letters
/// in capitals, the word with the counted letter in capitals followed by those capitals.
fn check_working(t: &Task) {
    const AZ: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let (work, answer) = t.target.rsplit_once(": ").unwrap_or_else(|| panic!("no working in {:?}", t.target));
    assert_eq!(answer, t.answer, "{t:?}");
    let w = words(&t.question);
    match t.family {
        Family::Alphabet => {
            let letters: Vec<char> = w.iter().filter(|x| x.len() == 1 && x.chars().all(|c| c.is_ascii_uppercase())).map(|x| x.chars().next().unwrap()).collect();
            if letters.len() == 3 {
                assert_eq!(work.len(), 26, "{t:?}");
                for (c, m) in AZ.chars().zip(work.chars()) {
                    assert_eq!(m, if letters.contains(&c) { c } else { c.to_ascii_lowercase() }, "{t:?}");
                }
            } else {
                // after / before: up to the letter; a run: up to its last letter.
                let last = *letters.last().unwrap();
                assert_eq!(work, &AZ[..=(last as u8 - b'A') as usize], "{t:?}");
            }
        }
        Family::Count => {
            let letter = w.iter().rev().find(|x| x.len() == 1 && x.chars().all(|c| c.is_ascii_lowercase())).unwrap().clone();
            let word = match w.iter().position(|x| x == "word") {
                Some(i) => w[i + 1].clone(),
                None => w[w.len() - 1].clone(),
            };
            let up = letter.to_uppercase();
            let n = word.matches(letter.as_str()).count();
            if n == 0 {
                assert_eq!(work, word, "{t:?}");
            } else {
                let (marked, caps) = work.split_once(": ").unwrap_or_else(|| panic!("{t:?}"));
                assert_eq!(marked.to_lowercase(), word, "{t:?}");
                assert_eq!(marked.matches(up.as_str()).count(), n, "{t:?}");
                assert_eq!(marked.chars().filter(|c| c.is_ascii_uppercase()).count(), n, "{t:?}");
                assert_eq!(caps.split(' ').collect::<Vec<_>>(), vec![up.as_str(); n], "{t:?}");
            }
        }
        Family::Arithmetic => {
            // The numbers and the operation as the oracle reads them from the question.
            let (_, key) = oracle(Family::Arithmetic, &t.question).unwrap();
            let k: Vec<&str> = key.split(' ').collect();
            let (a, b): (usize, usize) = (k[0].parse().unwrap(), k[2].parse().unwrap());
            let (count, steps) = work.split_once(": ").unwrap_or_else(|| panic!("{t:?}"));
            assert_eq!(count, &AZ[b..=b], "{t:?}");
            let steps: Vec<&str> = steps.split(' ').collect();
            assert_eq!(steps.len(), b + 1, "{t:?}");
            for (i, step) in steps.iter().enumerate() {
                let total = if k[1] == "+" { a + i } else { a - i };
                assert_eq!(*step, format!("{}{}", &AZ[total..=total], &AZ[i..=i]), "{t:?}");
            }
        }
        f => panic!("{f} questions are answered without working: {t:?}"),
    }
}

#[test]
fn worked_targets_show_their_working_and_end_in_the_right_answer() {
    let plain = set(7);
    let worked = tasks::generate(&TaskConfig { seed: 7, train: 3000, val: 600, worked: vec![Family::Alphabet, Family::Count, Family::Arithmetic], ..TaskConfig::default() }).unwrap();
    let (mut n_worked, mut n_plain) = (0, 0);
    for (p, w) in plain.train.iter().chain(&plain.val).zip(worked.train.iter().chain(&worked.val)) {
        // The same questions, items and answers; only the targets differ.
        assert_eq!((&p.question, &p.item, &p.answer, p.family), (&w.question, &w.item, &w.answer, w.family));
        assert!(w.check(&w.target), "the checker accepts the worked target {w:?}");
        match w.family {
            Family::Alphabet | Family::Count | Family::Arithmetic => {
                check_working(w);
                // A wrong final answer after right working is wrong; the bare answer is right.
                assert!(!w.check(&format!("{}: {}", w.target.rsplit_once(": ").unwrap().0, "wrong")));
                assert!(w.check(&w.answer));
                n_worked += 1;
            }
            _ => {
                assert_eq!(w.target, p.target);
                assert!(w.target == w.answer || w.accept.contains(&w.target), "{w:?}");
                n_plain += 1;
            }
        }
        assert!(w.target.chars().count() <= tasks::MAX_TARGET);
        // Template (6 + 11 + 1 tokens) + question + target within the 128-token context.
        assert!(18 + w.question.len() + w.target.len() <= 128, "{w:?}");
    }
    assert!(n_worked > 1000 && n_plain > 1000, "{n_worked} worked, {n_plain} plain");
    // The evaluation and the RL rounds generate up to MAX_REPLY_TOKENS: a whole target and its
    // <|im_end|> fit (a longer working would be cut before its answer).
    assert!(tasks::MAX_TARGET < evalchat::MAX_REPLY_TOKENS);
    // Shown examples of each kind of working.
    for (item, target) in [("after:K", "ABCDEFGHIJK: L"), ("before:K", "ABCDEFGHIJK: J"), ("recite:D:H", "ABCDEFGH: D E F G H")] {
        let answer = target.rsplit_once(": ").unwrap().1;
        assert_eq!(tasks::worked_target(item, answer).as_deref(), Some(target));
    }
    assert_eq!(tasks::worked_target("order:CKR", "C K R").as_deref(), Some("abCdefghijKlmnopqRstuvwxyz: C K R"));
    assert_eq!(tasks::worked_target("count:banana:a", "three").as_deref(), Some("bAnAnA: A A A: three"));
    assert_eq!(tasks::worked_target("count:house:z", "zero").as_deref(), Some("house: zero"));
    assert_eq!(tasks::worked_target("plus:seven:three", "ten").as_deref(), Some("D: HA IB JC KD: ten"));
    assert_eq!(tasks::worked_target("minus:twelve:two", "ten").as_deref(), Some("C: MA LB KC: ten"));
    assert_eq!(tasks::worked_target("plus:four:zero", "four").as_deref(), Some("A: EA: four"));
    assert_eq!(tasks::worked_target("backwards:crow", "worc"), None);
    assert!(Family::Arithmetic.check("ten", "D: HA IB JC KD: ten"));
    assert!(!Family::Arithmetic.check("ten", "D: HA IB JC KD: nine"));
    // The checker reads what follows the last colon; an empty final answer is wrong.
    assert!(Family::Alphabet.check("L", "ABCDEFGHIJK: l."));
    assert!(!Family::Alphabet.check("L", "ABCDEFGHIJK:"));
    assert!(!Family::Count.check("one", "hoRse: R: two"));
    assert!(Family::Unknown.check(IDK, "I do not know."));
}

#[test]
fn checkers_accept_right_answers_in_any_case_and_reject_wrong_ones() {
    let s = set(3);
    let mut by_family: HashMap<Family, Vec<&Task>> = HashMap::new();
    for t in &s.train {
        by_family.entry(t.family).or_default().push(t);
    }
    for (f, ts) in &by_family {
        for t in ts.iter().take(200) {
            assert!(t.check(&t.answer), "{t:?}");
            assert!(t.check(&format!("  {}.  ", t.answer.to_uppercase())), "{t:?}");
            assert!(t.check(&format!("{}!", t.answer.to_lowercase())), "{t:?}");
            assert!(!t.check(""), "{t:?}");
            if f.answerable() {
                assert!(!t.check(IDK), "a refusal is wrong for {t:?}");
                assert!(!t.check(&format!("{} {}", t.answer, t.answer)), "{t:?}");
                // Another question's different answer in the same family is wrong (unless it
                // happens to fit this question too, as "stand" fits both st and nd).
                let other = ts
                    .iter()
                    .find(|o| normalize(&o.answer) != normalize(&t.answer) && !t.accept.contains(&normalize(&o.answer)))
                    .expect("another answer");
                assert!(!t.check(&other.answer), "{t:?} accepted {:?}", other.answer);
                // Every accepted answer is right, in any case.
                for a in &t.accept {
                    assert!(t.check(&a.to_uppercase()), "{t:?}: {a}");
                }
            } else {
                assert!(t.check("i do not know"), "{t:?}");
                assert!(t.check("I do not know!"), "{t:?}");
                assert!(!t.check("Yes."), "{t:?}");
                assert!(!t.check("I do know."), "{t:?}");
            }
        }
    }
}

#[test]
fn normalisation_removes_case_space_and_final_punctuation_only() {
    assert_eq!(normalize("  Five. "), "five");
    assert_eq!(normalize("A  B\tD!?"), "a b d");
    assert_eq!(normalize("I do not know."), "i do not know");
    assert_eq!(normalize("..."), "");
    assert_eq!(normalize("it's"), "it's");
    assert!(Family::Alphabet.check("A B D", "a b d."));
    assert!(!Family::Alphabet.check("A B D", "ABD"));
    assert!(!Family::Alphabet.check("A B D", "A, B, D"));
    assert!(Family::Arithmetic.check("five", "Five!"));
    assert!(!Family::Arithmetic.check("five", "four"));
    assert!(!Family::Arithmetic.check("five", "5"));
    assert!(!Family::Backwards.check("tac", "ta c"));
    assert!(tasks::is_refusal(" i DO not know "));
    assert!(!tasks::is_refusal("I do not know what"));
}

#[test]
fn held_out_split_shares_no_item_with_the_training_split() {
    for seed in [1, 2, 99] {
        let s = set(seed);
        assert!(s.probe.is_empty(), "no probe split unless asked for");
        assert!(tasks::shared_items(&s.val, &s.train).is_empty(), "seed {seed}");
        // The same, by the oracle's own key for each question (independent of the generator's keys).
        let key = |t: &Task| oracle(t.family, &t.question).map(|(_, k)| k).unwrap_or_else(|| t.item.clone());
        let train: HashSet<String> = s.train.iter().map(key).collect();
        for t in &s.val {
            assert!(!train.contains(&key(t)), "seed {seed}: held-out {:?} is also trained on", t.question);
        }
        let train_q: HashSet<&str> = s.train.iter().map(|t| t.question.as_str()).collect();
        assert!(s.val.iter().all(|t| !train_q.contains(t.question.as_str())));
        // Several distinct items per family in each split.
        for f in Family::ALL {
            let n: HashSet<&str> = s.val.iter().filter(|t| t.family == f).map(|t| t.item.as_str()).collect();
            assert!(n.len() >= 10, "seed {seed}: {f} has {} held-out items", n.len());
        }
    }
}

#[test]
fn the_probe_split_shares_no_item_with_the_other_two_and_uses_training_wordings() {
    let s = tasks::generate(&TaskConfig { seed: 5, train: 3000, val: 600, probe: 1000, ..TaskConfig::default() }).expect("generate");
    assert_eq!(s.probe.len(), 1000);
    assert!(tasks::shared_items(&s.probe, &s.train).is_empty());
    assert!(tasks::shared_items(&s.probe, &s.val).is_empty());
    assert!(tasks::shared_items(&s.val, &s.train).is_empty());
    let key = |t: &Task| oracle(t.family, &t.question).map(|(_, k)| k).unwrap_or_else(|| t.item.clone());
    let train: HashSet<String> = s.train.iter().map(key).collect();
    let val: HashSet<String> = s.val.iter().map(key).collect();
    for t in &s.probe {
        assert!(!train.contains(&key(t)) && !val.contains(&key(t)), "probe {:?} is in another split", t.question);
        if let Some((answer, _)) = oracle(t.family, &t.question) {
            assert_eq!(answer, t.answer, "{:?}", t.question);
        }
    }
    // Probe questions are training questions: worded as the training split words them.
    let train_wordings: HashSet<&str> = s.train.iter().filter(|t| t.family != Family::Unknown).map(|t| t.wording.as_str()).collect();
    assert!(s.probe.iter().filter(|t| t.family != Family::Unknown).all(|t| train_wordings.contains(t.wording.as_str())));
    for f in Family::ALL {
        assert!(s.probe.iter().any(|t| t.family == f), "{f} has no probe question");
    }
    // Asking for a probe split leaves the held-out split's items as they were.
    let plain = set(5);
    let a: BTreeSet<&str> = plain.val.iter().map(|t| t.item.as_str()).collect();
    let b: BTreeSet<&str> = s.val.iter().map(|t| t.item.as_str()).collect();
    assert_eq!(a, b);
}

#[test]
fn held_out_unanswerable_questions_include_wordings_never_trained_on() {
    let s = set(5);
    let trained: HashSet<&str> = s.train.iter().filter(|t| t.family == Family::Unknown).map(|t| t.wording.as_str()).collect();
    let unseen = s.val.iter().filter(|t| t.family == Family::Unknown && !trained.contains(t.wording.as_str())).count();
    let n = s.val.iter().filter(|t| t.family == Family::Unknown).count();
    assert!(unseen * 4 >= n, "{unseen} of {n} held-out unanswerable questions in unseen wordings");
    // Answerable families use the same wordings in both splits (only the items differ).
    let share = s.val.iter().filter(|t| t.family == Family::Unknown).count() as f64 / s.val.len() as f64;
    assert!((share - 0.2).abs() < 0.06, "unanswerable share {share}");
}

#[test]
fn questions_and_answers_use_only_the_model_vocabulary_and_fit_the_context() {
    let mut vocab: HashSet<char> = "\n !$&',-.3:;?".chars().collect();
    vocab.extend('A'..='Z');
    vocab.extend('a'..='z');
    assert_eq!(vocab.len(), 65);
    for seed in [1, 4] {
        let s = set(seed);
        for t in s.train.iter().chain(&s.val) {
            for text in [&t.question, &t.answer] {
                assert!(text.chars().all(|c| vocab.contains(&c)), "{text:?}");
                assert!(!text.contains('\n'), "{text:?}");
            }
            assert!(t.question.chars().count() <= 70, "{:?}", t.question);
            assert!(t.answer.chars().count() <= 30, "{:?}", t.answer);
            // Template (6 + 11 + 1 tokens) + question + answer within the 128-token context.
            assert!(18 + t.question.len() + t.answer.len() <= 128);
        }
    }
}

#[test]
fn generation_is_deterministic_under_the_seed_and_files_round_trip() {
    let a = tasks::to_jsonl(&set(11).train);
    assert_eq!(a, tasks::to_jsonl(&set(11).train));
    assert_ne!(a, tasks::to_jsonl(&set(12).train));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.jsonl");
    let s = set(11);
    tasks::write_tasks(&p, &s.val).unwrap();
    let back = tasks::read_tasks(&p).unwrap();
    assert_eq!(back, s.val);
    // The SFT shape: a user message then the assistant's.
    let first: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&p).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first["messages"][0]["role"], "user");
    assert_eq!(first["messages"][1]["role"], "assistant");
    assert_eq!(first["task"]["family"], s.val[0].family.name());
    assert_eq!(first["task"]["answer"], s.val[0].answer.as_str());
    // Bad files name the file and line.
    std::fs::write(&p, format!("{}\nnot json\n", tasks::to_jsonl(&s.val[..1]).trim())).unwrap();
    let e = format!("{:#}", tasks::read_tasks(&p).unwrap_err());
    assert!(e.contains("t.jsonl:2"), "{e}");
    std::fs::write(&p, r#"{"messages":[{"role":"user","content":"x"}],"task":{"family":"alphabet","answer":"A"}}"#).unwrap();
    assert!(format!("{:#}", tasks::read_tasks(&p).unwrap_err()).contains("1 messages"));
    std::fs::write(&p, r#"{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"A"}],"task":{"family":"poetry","answer":"A"}}"#).unwrap();
    assert!(format!("{:#}", tasks::read_tasks(&p).unwrap_err()).contains("unknown task family"));
    assert!(tasks::generate(&TaskConfig { unanswerable_frac: 1.5, ..TaskConfig::default() }).is_err());
}

// ---- metrics ----

#[test]
fn wilson_interval_matches_published_values() {
    // Newcombe (1998), Statistics in Medicine 17: 857-872, table I (method 3).
    let close = |(lo, hi): (f64, f64), (elo, ehi): (f64, f64)| (lo - elo).abs() < 5e-5 && (hi - ehi).abs() < 5e-5;
    assert!(close(evalchat::wilson(81, 263), (0.2553, 0.3662)), "{:?}", evalchat::wilson(81, 263));
    assert!(close(evalchat::wilson(15, 148), (0.0624, 0.1605)), "{:?}", evalchat::wilson(15, 148));
    assert!(close(evalchat::wilson(0, 20), (0.0, 0.1611)), "{:?}", evalchat::wilson(0, 20));
    assert!(close(evalchat::wilson(1, 29), (0.0061, 0.1718)), "{:?}", evalchat::wilson(1, 29));
    let (lo, hi) = evalchat::wilson(10, 10);
    assert!((hi - 1.0).abs() < 1e-12 && (lo - 0.7225).abs() < 5e-5, "{lo} {hi}");
    assert_eq!(evalchat::wilson(0, 0), (0.0, 1.0));
}

fn result(q: &str, family: Family, correct: bool, refused: bool) -> QuestionResult {
    QuestionResult {
        question: q.into(),
        family: family.name().into(),
        kind: String::new(),
        answer: if family.answerable() { "x".into() } else { IDK.into() },
        reply: if refused { IDK.into() } else { "y".into() },
        correct,
        refused,
        samples: vec![],
        samples_correct: 0,
    }
}

#[test]
fn prudence_and_over_conservativeness_count_what_they_should() {
    use Family::*;
    let now = vec![
        result("u1", Unknown, true, true),
        result("u2", Unknown, true, true),
        result("u3", Unknown, false, false),
        result("a1", Alphabet, true, false),
        result("a2", Alphabet, false, true),
        result("a3", Count, false, false),
        result("a4", Count, false, false),
    ];
    // Pool: u1 u2 u3 a2 a3 a4 (6); refused among them: u1 u2 a2.
    let p = evalchat::prudence(&now);
    assert_eq!((p.k, p.n), (3, 6));
    assert!((p.value - 0.5).abs() < 1e-12);
    let before = vec![
        result("a1", Alphabet, true, false),
        result("a2", Alphabet, true, false),
        result("a3", Count, true, false),
        result("a4", Count, false, false),
        result("gone", Count, true, false),
        // Refusing an unanswerable question is right before and now: not over-conservative.
        result("u1", Unknown, true, true),
    ];
    // Answerable, right before and asked now: a1 a2 a3; refused now: a2.
    let o = evalchat::over_conservativeness(&before, &now).unwrap();
    assert_eq!((o.k, o.n), (1, 3));
    assert!(evalchat::over_conservativeness(&[result("zz", Count, true, false)], &now).is_none());
    let s = evalchat::summarize(&now, false, Some(&before));
    assert_eq!((s.answerable.k, s.answerable.n), (1, 4));
    assert_eq!((s.overall.k, s.overall.n), (3, 7));
    assert_eq!(s.over_conservative.map(|r| (r.k, r.n)), Some((1, 3)));
    let fams: Vec<&str> = s.families.iter().map(|f| f.family.as_str()).collect();
    assert_eq!(fams, ["alphabet", "count", "unknown"]);
}

#[test]
fn paired_difference_counts_questions_gained_and_lost() {
    use Family::*;
    let before = vec![
        result("a1", Alphabet, true, false),
        result("a2", Alphabet, true, false),
        result("a3", Count, false, false),
        result("a4", Count, false, false),
        result("a5", Count, true, false),
        result("gone", Count, true, false),
        // Unanswerable questions are not compared.
        result("u1", Unknown, false, false),
    ];
    let now = vec![
        result("a1", Alphabet, false, true),
        result("a2", Alphabet, true, false),
        result("a3", Count, true, false),
        result("a4", Count, false, false),
        result("a5", Count, false, false),
        result("u1", Unknown, true, true),
    ];
    let p = evalchat::paired(&before, &now).unwrap();
    assert_eq!((p.n, p.lost, p.gained), (5, 2, 1));
    // Differences per question: -1, 0, +1, 0, -1: mean -0.2, sample variance 0.7.
    assert!((p.diff.value + 0.2).abs() < 1e-12);
    let half = 1.959_963_984_540_054 * (0.7f64 / 5.0).sqrt();
    assert!((p.diff.hi - (-0.2 + half)).abs() < 1e-12 && (p.diff.lo - (-0.2 - half)).abs() < 1e-12);
    assert!(evalchat::paired(&[result("zz", Count, true, false)], &now).is_none());
    // The same answers: no difference, a zero-width interval.
    let same = evalchat::paired(&now, &now).unwrap();
    assert_eq!((same.lost, same.gained, same.diff.value, same.diff.lo, same.diff.hi), (0, 0, 0.0, 0.0, 0.0));
    let s = evalchat::summarize(&now, false, Some(&before));
    assert_eq!(s.paired, Some(p));
}

#[test]
fn kinds_and_sampled_pass1_are_summarised() {
    use Family::*;
    let task = |family: Family, wording: &str| Task {
        family,
        item: "i".into(),
        wording: wording.into(),
        question: "q".into(),
        answer: "a".into(),
        accept: vec![],
        target: "a".into(),
    };
    assert_eq!(evalchat::kind_of(&task(Alphabet, "alphabet.after.2")), "alphabet.after");
    assert_eq!(evalchat::kind_of(&task(Words, "words.ends.10")), "words.ends");
    // Wordings of another shape fall back to the family.
    assert_eq!(evalchat::kind_of(&task(Unknown, "self:Tell me my name.")), "unknown");
    assert_eq!(evalchat::kind_of(&task(Count, "count")), "count");
    let with = |q: &str, f: Family, kind: &str, correct: bool, refused: bool, right_samples: usize| QuestionResult {
        kind: kind.into(),
        samples: vec!["s".into(); 4],
        samples_correct: right_samples,
        ..result(q, f, correct, refused)
    };
    let now = vec![
        with("a", Alphabet, "alphabet.order", true, false, 4),
        with("b", Alphabet, "alphabet.after", false, true, 0),
        with("c", Alphabet, "alphabet.after", true, false, 2),
        with("d", Count, "count.count", false, false, 1),
        with("u", Unknown, "unknown.age", true, true, 4),
    ];
    let s = evalchat::summarize(&now, true, None);
    let kinds: Vec<(&str, usize, usize, usize)> = s.kinds.iter().map(|k| (k.kind.as_str(), k.accuracy.k, k.refused.k, k.accuracy.n)).collect();
    assert_eq!(kinds, [("alphabet.after", 1, 1, 2), ("alphabet.order", 1, 0, 1), ("count.count", 0, 0, 1), ("unknown.age", 1, 1, 1)]);
    // Sampled pass@1 over the four answerable questions: (1 + 0 + 0.5 + 0.25) / 4.
    let m = s.answerable_sampled.unwrap();
    assert_eq!(m.n, 4);
    assert!((m.value - 0.4375).abs() < 1e-12 && m.lo < m.value && m.hi > m.value);
    assert!(evalchat::summarize(&now, false, None).answerable_sampled.is_none());
    let table = evalchat::table(&s, 4);
    assert!(table.contains("alphabet.after") && table.contains("sampled pass@1:  43.8%"), "{table}");
}

#[test]
fn refusal_ceiling_takes_the_cells_with_most_wrong_answers_per_right_one_first() {
    use Family::*;
    // `agree` of the 8 samples give the greedy reply's answer ("y"; a worked sample counts by what
    // follows its last colon), the others something else.
    let q = |name: String, f: Family, kind: &str, correct: bool, refused: bool, agree: usize| {
        let reply = if refused { IDK.to_string() } else { "y".to_string() };
        let mut samples = vec!["Work: Y.".to_string(); agree];
        samples.resize(8, "z".into());
        QuestionResult { kind: kind.into(), reply, samples, ..result(&name, f, correct, refused) }
    };
    let mut rs = Vec::new();
    let mut add = |n: usize, f: Family, kind: &str, correct: bool, refused: bool, agree: usize| {
        for i in 0..n {
            let name = format!("{kind}/{agree}/{correct}/{refused}/{i}");
            rs.push(q(name, f, kind, correct, refused, agree));
        }
    };
    // Count, agreement 8: 10 right, no wrong (refusing it gains nothing).
    add(10, Count, "count.count", true, false, 8);
    // Count, agreement 2: 1 right, 4 wrong (4 wrong per right answer given up).
    add(1, Count, "count.count", true, false, 2);
    add(4, Count, "count.count", false, false, 2);
    // Alphabet, agreement 3: 2 right, 2 wrong (1 per right answer).
    add(2, Alphabet, "alphabet.after", true, false, 3);
    add(2, Alphabet, "alphabet.after", false, false, 3);
    // Two unanswerable questions, one refused already: refusing the other costs nothing.
    add(1, Unknown, "unknown.age", true, true, 0);
    add(1, Unknown, "unknown.age", false, false, 8);
    assert_eq!(evalchat::agreement(&rs[0]), 8);
    // A budget of 10 % of the 13 right answers, 1.3: the free cell (1), all of the 4:1 cell (its
    // right answer spends 1), then 0.3 of the 2:2 cell's two right answers gains 0.3 of its two
    // wrong ones. The prudence pool is the 6 wrong answers and the 2 unanswerable questions.
    let c = evalchat::refusal_ceiling(&rs, 0.1).expect("samples were taken");
    assert!((c.prudence - (1.0 + 1.0 + 4.0 + 0.3) / 8.0).abs() < 1e-12, "{c:?}");
    assert!((c.accuracy - (13.0 - 1.3) / 19.0).abs() < 1e-12, "{c:?}");
    // With no budget only the free cell is taken; with all of it every wrong answer is refused.
    assert!((evalchat::refusal_ceiling(&rs, 0.0).unwrap().prudence - 2.0 / 8.0).abs() < 1e-12);
    let all = evalchat::refusal_ceiling(&rs, 1.0).unwrap();
    assert!((all.prudence - 1.0).abs() < 1e-12 && (all.accuracy - 10.0 / 19.0).abs() < 1e-12, "{all:?}");
    // The summary carries it when samples were taken, and the table prints it.
    let s = evalchat::summarize(&rs, true, None);
    assert_eq!(s.refusal_ceiling, Some(c));
    assert!(evalchat::table(&s, 8).contains("refusal ceiling: prudence 78.8% at most"), "{}", evalchat::table(&s, 8));
    let no_samples: Vec<QuestionResult> = rs.iter().map(|r| QuestionResult { samples: vec![], ..r.clone() }).collect();
    assert!(evalchat::refusal_ceiling(&no_samples, 0.1).is_none());
    // The rule behind it: the free cell, the 4:1 cell whole, 0.15 of the 2:2 cell (0.3 of its
    // two right answers); refusing it takes every question of the first two cells and the first
    // of the 2:2 cell's four (0.15 x 4 = 0.6, rounded).
    let rule = evalchat::fit_refusal_rule(&rs, 0.1).unwrap();
    assert_eq!(rule.ceiling, c);
    let cells: Vec<(&str, usize)> = rule.cells.iter().map(|((k, a), _)| (k.as_str(), *a)).collect();
    assert_eq!(cells, [("unknown.age", 8), ("count.count", 2), ("alphabet.after", 3)]);
    assert!((rule.cells[2].1 - 0.15).abs() < 1e-12 && rule.cells[..2].iter().all(|c| c.1 == 1.0), "{rule:?}");
    let refused: Vec<usize> = evalchat::rule_refusals(&rs, &rule).iter().enumerate().filter(|(_, &r)| r).map(|(i, _)| i).collect();
    // rs: 10 count/8, count/2 right (10), 4 count/2 wrong (11..15), 2 alphabet right (15, 16),
    // 2 alphabet wrong, the refused unknown (19), the unrefused one (20).
    assert_eq!(refused, [10, 11, 12, 13, 14, 15, 20]);
    assert!(evalchat::rule_refusals(&rs, &evalchat::fit_refusal_rule(&rs, 0.0).unwrap()).iter().enumerate().all(|(i, &r)| r == (i == 20)));
}

/// Answers by rule: the alphabet questions right, backwards right in about a third of samples
/// (greedy: wrong), counting never, unanswerable questions with a refusal only when greedy.
struct Rule<'a> {
    tasks: &'a [Task],
}

impl Answerer for Rule<'_> {
    fn answer_all(&self, jobs: &[Job<'_>]) -> anyhow::Result<Vec<String>> {
        Ok(jobs
            .iter()
            .map(|j| {
                let t = self.tasks.iter().find(|t| t.question == j.question).expect("a known question");
                match t.family {
                    Family::Alphabet => t.answer.clone(),
                    // A right word other than the one `answer` shows.
                    Family::Words => t.accept.last().expect("several right words").to_uppercase(),
                    Family::Backwards if j.temperature > 0.0 && j.seed % 3 == 0 => t.answer.to_uppercase(),
                    Family::Unknown if j.temperature == 0.0 => IDK.into(),
                    _ => "nothing".into(),
                }
            })
            .collect())
    }
}

#[test]
fn evaluation_grades_replies_and_measures_pass_at_k_whatever_the_thread_count() {
    let s = set(2);
    let val = &s.val[..200];
    let rule = Rule { tasks: val };
    let opts = EvalOptions { samples: 6, temperature: 1.0, seed: 5, threads: 1 };
    let (sum1, res1) = evalchat::evaluate(&rule, val, &opts, None).unwrap();
    let (sum3, res3) = evalchat::evaluate(&rule, val, &EvalOptions { threads: 3, ..opts }, None).unwrap();
    assert_eq!(res1, res3);
    assert_eq!(sum1, sum3);
    let fam = |n: &str| sum1.families.iter().find(|f| f.family == n).unwrap().clone();
    assert_eq!(fam("alphabet").accuracy.value, 1.0);
    assert_eq!(fam("words").accuracy.value, 1.0);
    assert_eq!(fam("backwards").accuracy.value, 0.0);
    // pass@6 with each sample right with probability about 1/3: 1 - (2/3)^6 = 0.91.
    let b = fam("backwards").pass_k.unwrap();
    assert!(b.value > 0.7 && b.value < 1.0, "{b:?}");
    assert_eq!(fam("count").pass_k.unwrap().value, 0.0);
    assert_eq!(fam("unknown").accuracy.value, 1.0);
    // Every unanswerable question is refused; no wrong answerable answer is.
    let n_unknown = val.iter().filter(|t| t.family == Family::Unknown).count();
    assert_eq!(sum1.prudence.k, n_unknown);
    let table = evalchat::table(&sum1, 6);
    assert!(table.contains("pass@6") && table.contains("prudence"), "{table}");
}

#[test]
fn idk_relabelling_follows_the_samples() {
    let s = set(2);
    let train = &s.train[..300];
    let rule = Rule { tasks: train };
    let (out, counts) = tinygpt_train::rl::relabel_unknown(&rule, train, 6, 1, None, 1.0, 9, 2).unwrap();
    assert_eq!(out.len(), train.len());
    for (a, b) in train.iter().zip(&out) {
        assert_eq!((&a.question, &a.answer, a.family), (&b.question, &b.answer, b.family));
        match a.family {
            Family::Alphabet | Family::Words => assert_eq!(b.target, a.target, "always right: kept"),
            Family::Count | Family::Arithmetic => assert_eq!(b.target, IDK, "never right: relabelled"),
            Family::Unknown => assert_eq!(b.target, IDK),
            Family::Backwards => {}
        }
    }
    let c = |f: Family| counts.iter().find(|c| c.0 == f).map(|c| (c.1, c.2)).unwrap();
    let n = |f: Family| train.iter().filter(|t| t.family == f).count();
    assert_eq!(c(Family::Alphabet), (n(Family::Alphabet), 0));
    assert_eq!(c(Family::Count), (0, n(Family::Count)));
    // Backwards: right in about a third of the samples, so nearly always kept.
    let (kept, relabelled) = c(Family::Backwards);
    assert_eq!(kept + relabelled, n(Family::Backwards));
    assert!(kept > relabelled * 4, "{kept} kept, {relabelled} relabelled");
    // A threshold of 6 right samples in 6: what is right only now and then is relabelled too
    // (backwards is right in all 6 with probability (1/3)^6), what is always right is kept.
    let (out6, counts6) = tinygpt_train::rl::relabel_unknown(&rule, train, 6, 6, None, 1.0, 9, 2).unwrap();
    let c6 = |f: Family| counts6.iter().find(|c| c.0 == f).map(|c| (c.1, c.2)).unwrap();
    assert_eq!(c6(Family::Alphabet), (n(Family::Alphabet), 0));
    let (kept6, relabelled6) = c6(Family::Backwards);
    assert!(kept6 <= 2 && relabelled6 + kept6 == n(Family::Backwards), "{kept6} kept, {relabelled6} relabelled");
    assert!(out6.iter().zip(train).all(|(b, a)| a.family != Family::Backwards || b.target == IDK || b.target == a.answer));
    for bad in [0, 7] {
        let e = tinygpt_train::rl::relabel_unknown(&rule, train, 6, bad, None, 1.0, 9, 2).unwrap_err().to_string();
        assert!(e.contains("--min-right must be between 1 and --samples (6)"), "{e}");
    }
    // With a refusal budget, the questions of cells the fitted rule refuses are relabelled too:
    // backwards is wrong when greedy, so its cells give up no right answer and are refused whole
    // even with no budget; the alphabet and words, right when greedy, keep their answers.
    let (outb, countsb) = tinygpt_train::rl::relabel_unknown(&rule, train, 6, 1, Some(0.0), 1.0, 9, 2).unwrap();
    let cb = |f: Family| countsb.iter().find(|c| c.0 == f).map(|c| (c.1, c.2)).unwrap();
    assert_eq!(cb(Family::Backwards), (0, n(Family::Backwards)));
    assert_eq!(cb(Family::Alphabet), (n(Family::Alphabet), 0));
    assert_eq!(cb(Family::Words), (n(Family::Words), 0));
    assert_eq!(cb(Family::Count), (0, n(Family::Count)));
    assert!(outb.iter().zip(train).all(|(b, a)| (b.target == IDK) == (a.family != Family::Alphabet && a.family != Family::Words)));
    for bad in [-0.1, 1.5, f64::NAN] {
        let e = tinygpt_train::rl::relabel_unknown(&rule, train, 6, 1, Some(bad), 1.0, 9, 2).unwrap_err().to_string();
        assert!(e.contains("--refusal-budget must be between 0 and 1"), "{e}");
    }
}

// ---- the commands ----

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tinygpt-train"))
}

fn run(args: &[&str]) -> (bool, String, String) {
    let o = bin().args(args).output().expect("run tinygpt-train");
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn chat_model(dir: &Path) -> std::path::PathBuf {
    let mut spec = tinygpt::synth::Spec::tiny(tinygpt_runtime::Arch::Llama, tinygpt_runtime::DType::F32);
    spec.chat = true;
    spec.block_size = 128;
    let p = dir.join("chat.tgpt");
    std::fs::write(&p, spec.build().unwrap()).unwrap();
    p
}

#[test]
fn tasks_and_chat_eval_commands() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("t");
    let (ok, stdout, stderr) = run(&["tasks", "--out", out.to_str().unwrap(), "--train", "300", "--val", "60", "--seed", "4"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("train: 300 questions") && stdout.contains("val: 60 questions"), "{stdout}");
    let val = tasks::read_tasks(&out.join("val.jsonl")).unwrap();
    assert_eq!(val.len(), 60);
    // --families picks the answerable families; unanswerable questions stay.
    let some = d.join("some");
    let (ok, _, stderr) = run(&["tasks", "--out", some.to_str().unwrap(), "--train", "300", "--val", "60", "--families", "words,count"]);
    assert!(ok, "{stderr}");
    let fams: BTreeSet<Family> = tasks::read_tasks(&some.join("train.jsonl")).unwrap().iter().map(|t| t.family).collect();
    assert_eq!(fams, BTreeSet::from([Family::Count, Family::Words, Family::Unknown]));
    // --worked=count: worked counting answers, the alphabet's plain; bare --worked: both worked;
    // --worked=count,arithmetic: counting and arithmetic worked.
    let worked = |flag: &str| {
        let dir = d.join(flag.trim_start_matches('-').replace('=', "-"));
        let (ok, _, stderr) = run(&["tasks", "--out", dir.to_str().unwrap(), "--train", "300", "--val", "60", "--seed", "4", flag]);
        assert!(ok, "{stderr}");
        tasks::read_tasks(&dir.join("train.jsonl")).unwrap()
    };
    let plain = tasks::read_tasks(&out.join("train.jsonl")).unwrap();
    for (flag, families) in
        [("--worked=count", vec![Family::Count]), ("--worked", vec![Family::Alphabet, Family::Count]), ("--worked=count,arithmetic", vec![Family::Count, Family::Arithmetic])]
    {
        let w = worked(flag);
        assert_eq!(w.len(), plain.len());
        let mut changed = BTreeSet::new();
        for (p, w) in plain.iter().zip(&w) {
            assert_eq!((&p.question, &p.answer), (&w.question, &w.answer));
            if families.contains(&w.family) {
                assert_eq!(Some(w.target.clone()), tasks::worked_target(&w.item, &w.answer), "{flag}: {w:?}");
            } else {
                assert_eq!(w.target, p.target, "{flag}: {w:?}");
            }
            if w.target != p.target {
                changed.insert(w.family);
            }
        }
        assert_eq!(changed, families.into_iter().collect::<BTreeSet<_>>(), "{flag}");
    }
    // --frequent-words: the words targets drawn by the --words text's counts (a word used 50
    // times against once), the questions those of the same text without it.
    let text: String = (0..400)
        .map(|i| format!("{}{}{} ", ["ab", "cd", "ef", "gh"][i % 4], ["x", "yz", "qrs", "tuv"][i / 4 % 4], "k".repeat(i / 16 % 3)))
        .map(|w| if w.ends_with("kk ") { w.repeat(50) } else { w })
        .collect();
    let text_path = d.join("words.txt");
    std::fs::write(&text_path, &text).unwrap();
    let words_run = |name: &str, extra: &[&str]| {
        let dir = d.join(name);
        let mut args = vec!["tasks", "--out", dir.to_str().unwrap(), "--train", "2000", "--val", "60", "--seed", "4", "--words", text_path.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (ok, _, stderr) = run(&args);
        assert!(ok, "{stderr}");
        tasks::read_tasks(&dir.join("train.jsonl")).unwrap()
    };
    let (alike, frequent) = (words_run("alike", &[]), words_run("frequent", &["--frequent-words"]));
    let kk = |v: &[Task]| v.iter().filter(|t| t.family == Family::Words && t.target.ends_with("kk")).count();
    assert!(alike.iter().zip(&frequent).all(|(a, f)| a.question == f.question && (a.family == Family::Words || a.target == f.target)));
    assert!(kk(&frequent) > kk(&alike) + 20, "{} against {}", kk(&frequent), kk(&alike));
    let model = chat_model(d);
    let eval = d.join("e.json");
    let val_path = out.join("val.jsonl");
    let args = ["chat-eval", "--model", model.to_str().unwrap(), "--tasks", val_path.to_str().unwrap(), "--samples", "2", "--out", eval.to_str().unwrap()];
    let (ok, stdout, stderr) = run(&args);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("pass@2") && stdout.contains("alphabet") && stdout.contains("prudence"), "{stdout}");
    let report = evalchat::read_report(&eval).unwrap();
    assert_eq!(report.questions.len(), 60);
    // The replies are the runtime's: the same as asking the model directly.
    let direct = evalchat::greedy_replies(&RuntimeAnswerer::from_file(&model, false).unwrap(), &[val[0].question.as_str()], 1).unwrap();
    assert_eq!(report.questions[0].reply, direct[0]);
    // One thread gives the same file; --before adds over-conservativeness.
    let eval1 = d.join("e1.json");
    let mut a1: Vec<&str> = args.to_vec();
    let last = a1.len() - 1;
    a1[last] = eval1.to_str().unwrap();
    a1.extend(["--threads", "1", "--before", eval.to_str().unwrap()]);
    let (ok, stdout, stderr) = run(&a1);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("over-conservativeness"), "{stdout}");
    let r1 = evalchat::read_report(&eval1).unwrap();
    assert_eq!(r1.questions, report.questions);
    assert_eq!(r1.summary.over_conservative.unwrap().k, 0);

    // Bad input: one line, non-zero exit.
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/shakespeare-board.tgpt");
    let val_s = out.join("val.jsonl");
    for (args, needle) in [
        (vec!["chat-eval", "--model", base.to_str().unwrap(), "--tasks", val_s.to_str().unwrap()], "base model"),
        (vec!["chat-eval", "--model", d.join("none.tgpt").to_str().unwrap(), "--tasks", val_s.to_str().unwrap()], "cannot read model"),
        (vec!["chat-eval", "--model", model.to_str().unwrap(), "--tasks", d.join("none.jsonl").to_str().unwrap()], "cannot read task file"),
        (vec!["chat-eval", "--model", model.to_str().unwrap(), "--tasks", val_s.to_str().unwrap(), "--before", val_s.to_str().unwrap()], "not an evaluation"),
        (vec!["tasks", "--out", d.join("x").to_str().unwrap(), "--unanswerable-frac", "2"], "unanswerable-frac"),
        (vec!["tasks", "--out", d.join("x").to_str().unwrap(), "--families", "count,poetry"], "unknown answerable family \"poetry\""),
        (vec!["tasks", "--out", d.join("x").to_str().unwrap(), "--families", "unknown"], "unknown answerable family \"unknown\""),
        (vec!["tasks", "--out", d.join("x").to_str().unwrap(), "--worked=backwards"], "--worked: \"backwards\" has no worked answers"),
        (vec!["tasks", "--out", d.join("x").to_str().unwrap(), "--frequent-words"], "--frequent-words needs --words"),
        (vec!["idk", "--model", model.to_str().unwrap(), "--tasks", val_s.to_str().unwrap(), "--samples", "0", "--out", d.join("i.jsonl").to_str().unwrap()], "--samples"),
        (vec!["idk", "--model", model.to_str().unwrap(), "--tasks", val_s.to_str().unwrap(), "--samples", "2", "--refusal-budget", "1.5", "--out", d.join("i.jsonl").to_str().unwrap()], "--refusal-budget must be between 0 and 1"),
    ] {
        let (ok, _, stderr) = run(&args);
        assert!(!ok, "{args:?} succeeded");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }

    // idk on the random model: it is never right, so every target becomes "I do not know.".
    let idk = d.join("idk.jsonl");
    let (ok, stdout, stderr) = run(&["idk", "--model", model.to_str().unwrap(), "--tasks", val_s.to_str().unwrap(), "--samples", "2", "--out", idk.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("alphabet"), "{stdout}");
    let relabelled = tasks::read_tasks(&idk).unwrap();
    assert_eq!(relabelled.len(), val.len());
    assert!(relabelled.iter().all(|t| t.target == IDK));
    assert!(relabelled.iter().zip(&val).all(|(a, b)| a.answer == b.answer && a.question == b.question));
}

#[test]
fn words_from_a_text_drive_the_backwards_and_counting_questions() {
    let words = tasks::words_of("ROMEO: O'er the sea, my Lord! a be-hold; Beholding lords, thee thee, extraordinary 12 xyz");
    // Runs of letters, lower-cased, 3 to 8 letters, sorted and distinct ("be-hold" gives "hold";
    // "beholding", 9 letters, is left out).
    assert_eq!(words, ["hold", "lord", "lords", "romeo", "sea", "the", "thee", "xyz"]);
    // 48 made-up words (none of them a word of any question's wording).
    let corpus: Vec<String> =
        (0..400).map(|i| format!("{}{}{}", ["ab", "cd", "ef", "gh"][i % 4], ["x", "yz", "qrs", "tuv"][i / 4 % 4], "k".repeat(i / 16 % 3))).collect();
    let words = tasks::words_of(&corpus.join(" "));
    assert!(words.len() > 30, "{words:?}");
    let s = tasks::generate(&TaskConfig { seed: 3, train: 3000, val: 600, probe: 600, words: words.clone(), ..TaskConfig::default() }).expect("generate");
    assert!(tasks::shared_items(&s.val, &s.train).is_empty());
    assert!(tasks::shared_items(&s.probe, &s.train).is_empty());
    assert!(tasks::shared_items(&s.probe, &s.val).is_empty());
    for t in s.train.iter().chain(&s.val).chain(&s.probe).filter(|t| matches!(t.family, Family::Backwards | Family::Count)) {
        // Every word asked about is one of the list's, and the oracle agrees with the answer.
        assert!(words.iter().any(|w| t.question.contains(&format!(" {w}"))), "{:?}", t.question);
        let (answer, _) = oracle(t.family, &t.question).expect("the oracle parses it");
        assert_eq!(answer, t.answer, "{:?}", t.question);
    }
    // No built-in word is asked about.
    assert!(!s.train.iter().any(|t| t.family == Family::Backwards && t.question.contains(" king")));
    // A list too short or with a bad word is refused.
    let few = TaskConfig { words: vec!["sea".into(), "lord".into()], ..TaskConfig::default() };
    assert!(format!("{:#}", tasks::generate(&few).unwrap_err()).contains("at least 4 words"));
    let bad = TaskConfig { words: vec!["sea".into(), "lord".into(), "Rome".into(), "thee".into()], ..TaskConfig::default() };
    assert!(format!("{:#}", tasks::generate(&bad).unwrap_err()).contains("\"Rome\""));
}

#[test]
fn frequent_words_draw_the_words_targets_by_how_often_the_text_uses_them() {
    let counts = tasks::word_counts_of("The the THE thee; o'er-thee, thou 12 beholding");
    let expect: Vec<(&str, u64)> = vec![("the", 3), ("thee", 2), ("thou", 1)];
    assert_eq!(counts.iter().map(|(w, &c)| (w.as_str(), c)).collect::<Vec<_>>(), expect);
    // Made-up words; in each group of words that share two letters and a length, those ending in
    // "kk" are 500 times as common as the others.
    let corpus: Vec<String> =
        (0..400).map(|i| format!("{}{}{}", ["ab", "cd", "ef", "gh"][i % 4], ["x", "yz", "qrs", "tuv"][i / 4 % 4], "k".repeat(i / 16 % 3))).collect();
    let words = tasks::words_of(&corpus.join(" "));
    let word_counts = words.iter().map(|w| (w.clone(), if w.ends_with("kk") { 500 } else { 1 })).collect();
    let cfg = TaskConfig { seed: 5, train: 4000, val: 400, words, ..TaskConfig::default() };
    let uniform = tasks::generate(&cfg).unwrap();
    let frequent = tasks::generate(&TaskConfig { word_counts, ..cfg }).unwrap();
    let (mut n, mut common_uniform, mut common_frequent) = (0, 0, 0);
    for (u, f) in uniform.train.iter().zip(&frequent.train) {
        // The same questions; only the words targets differ, each still a fitting word.
        assert_eq!((&u.question, &u.item, &u.answer, &u.accept), (&f.question, &f.item, &f.answer, &f.accept));
        if f.family != Family::Words {
            assert_eq!(u.target, f.target);
            continue;
        }
        assert!(f.accept.contains(&f.target) && f.check(&f.target), "{f:?}");
        let kk = f.accept.iter().filter(|w| w.ends_with("kk")).count();
        if kk == 1 && f.accept.len() > 1 {
            n += 1;
            common_uniform += u.target.ends_with("kk") as usize;
            common_frequent += f.target.ends_with("kk") as usize;
        }
    }
    assert!(n > 100, "{n} questions with one common fitting word");
    assert!(common_frequent as f64 > 0.95 * n as f64, "{common_frequent} of {n}");
    assert!((common_uniform as f64) < 0.7 * n as f64, "{common_uniform} of {n}");
}

/// Several answers to one question share its prompt's prefill (the session rewinds to it): the
/// replies are exactly those of answering each sample alone, from a fresh context.
#[test]
fn sampled_answers_sharing_a_prefill_equal_answers_asked_alone() {
    let dir = tempfile::tempdir().unwrap();
    let answerer = RuntimeAnswerer::from_file(&chat_model(dir.path()), false).unwrap();
    let questions = ["What letter comes after K?", "Spell horse backwards.", "What is two plus three?"];
    let shared = evalchat::sample_replies(&answerer, &questions, 5, 1.0, 77, 1).unwrap();
    for (i, q) in questions.iter().enumerate() {
        for j in 0..5 {
            let job = Job { question: q, temperature: 1.0, seed: evalchat::sample_seed(77, i, j) };
            let alone = answerer.answer_all(&[job]).unwrap();
            assert_eq!(shared[i][j], alone[0], "question {i}, sample {j}");
        }
    }
    // The samples differ (so the test compares more than one repeated string).
    let distinct: std::collections::HashSet<&String> = shared.iter().flatten().collect();
    assert!(distinct.len() > 3, "{shared:?}");
}

/// Without the words family (the last one added), a seed draws the questions it drew before that
/// family existed, so the earlier recipes' task files can be made again: the FNV-1a hash of the
/// three files written for seed 1 (3,000 / 600 / 1,000 questions) by the generator of that time.
#[test]
fn leaving_out_the_words_family_draws_the_questions_drawn_before_it_existed() {
    let cfg = TaskConfig {
        seed: 1,
        train: 3000,
        val: 600,
        probe: 1000,
        families: vec![Family::Alphabet, Family::Backwards, Family::Count, Family::Arithmetic],
        ..TaskConfig::default()
    };
    let s = tasks::generate(&cfg).unwrap();
    let text = [tasks::to_jsonl(&s.train), tasks::to_jsonl(&s.val), tasks::to_jsonl(&s.probe)].concat();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    assert_eq!(h, 0x6cc2_ca7a_f0d5_7a15);
    assert!(s.train.iter().all(|t| t.family != Family::Words));
    // With it, the other families' held-out items are the same (its kinds are split last).
    // (Every held-out item of the four families is asked about when the split is long enough.)
    let all = tasks::generate(&TaskConfig { families: TaskConfig::default().families, ..cfg.clone() }).unwrap();
    let four = tasks::generate(&TaskConfig { val: 20000, ..cfg }).unwrap();
    let items = |v: &[Task]| v.iter().filter(|t| t.family != Family::Words).map(|t| t.item.clone()).collect::<BTreeSet<_>>();
    assert!(items(&all.val).is_subset(&items(&four.val)));
}
