//! `stop` strings: generated text is cut at the first occurrence of any of them.
//!
//! Text arrives in pieces; a piece that could be the start of a stop string is held back until
//! the next pieces show whether it is one, so that a streamed response never sends text that the
//! cut later removes, and streamed and whole responses agree.

/// Cuts a stream of text at the first stop string.
pub struct StopCut {
    stops: Vec<String>,
    pending: String,
    hit: bool,
}

impl StopCut {
    /// A cutter for `stops` (empty strings are ignored).
    pub fn new(stops: Vec<String>) -> Self {
        StopCut { stops: stops.into_iter().filter(|s| !s.is_empty()).collect(), pending: String::new(), hit: false }
    }

    /// Whether a stop string has been seen (everything after it is dropped).
    pub fn hit(&self) -> bool {
        self.hit
    }

    /// Takes the next piece of text; returns the text that is now certain to be part of the
    /// output (possibly empty).
    pub fn push(&mut self, text: &str) -> String {
        if self.hit {
            return String::new();
        }
        if self.stops.is_empty() {
            return text.to_owned();
        }
        self.pending.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            self.hit = true;
            let out = self.pending[..at].to_owned();
            self.pending.clear();
            return out;
        }
        // Hold back the longest tail that begins some stop string.
        let len = self.pending.len();
        let mut keep = 0;
        for (i, _) in self.pending.char_indices() {
            let tail = &self.pending[i..];
            if self.stops.iter().any(|s| s.starts_with(tail)) {
                keep = len - i;
                break;
            }
        }
        let out = self.pending[..len - keep].to_owned();
        self.pending.drain(..len - keep);
        out
    }

    /// The end of the text: whatever was held back is output after all.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` in pieces of `n` characters; returns the output and whether it was cut.
    fn run(stops: &[&str], text: &str, n: usize) -> (String, bool) {
        let mut c = StopCut::new(stops.iter().map(|s| s.to_string()).collect());
        let chars: Vec<char> = text.chars().collect();
        let mut out = String::new();
        for piece in chars.chunks(n) {
            out += &c.push(&piece.iter().collect::<String>());
        }
        out += &c.finish();
        (out, c.hit())
    }

    #[test]
    fn cuts_at_the_first_match_in_any_piece_size() {
        for n in 1..6 {
            assert_eq!(run(&["\n\n"], "ab\ncd\n\nef\n\n", n), ("ab\ncd".into(), true));
            assert_eq!(run(&["xyz", "cd"], "abcdxyz", n), ("ab".into(), true));
            assert_eq!(run(&["zz"], "abz", n), ("abz".into(), false));
            assert_eq!(run(&[], "abc", n), ("abc".into(), false));
            assert_eq!(run(&["é!"], "aéébé!c", n), ("aééb".into(), true));
            assert_eq!(run(&["aab"], "aaab", n), ("a".into(), true));
        }
        assert_eq!(run(&["abc"], "abc", 3), ("".into(), true));
    }

    #[test]
    fn holds_back_only_possible_starts() {
        let mut c = StopCut::new(vec!["END".into()]);
        assert_eq!(c.push("hello E"), "hello ");
        assert_eq!(c.push("X"), "EX");
        assert_eq!(c.push("EN"), "");
        assert_eq!(c.push("D tail"), "");
        assert!(c.hit());
        assert_eq!(c.finish(), "");
    }
}
