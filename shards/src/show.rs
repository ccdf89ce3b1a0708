//! How client ids and topics appear in log lines: [`short`] keeps a line readable when a
//! client sends a 65 535-byte client id or topic. Used by every log site that prints one,
//! on any shard.

use std::fmt;

/// Characters of a client id or topic a log line shows; the rest is summed up by its
/// length.
const SHOWN: usize = 128;

/// A client id or topic as a log line shows it (see [`short`]).
pub struct Short<'a>(&'a str);

/// `s` whole when it is at most 128 characters long, else its first 128 characters, an
/// ellipsis and its full length in bytes: `abc… (65000 bytes)`.
pub fn short(s: &str) -> Short<'_> {
    Short(s)
}

impl fmt::Display for Short<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(SHOWN) {
            None => f.write_str(self.0),
            Some((cut, _)) => write!(f, "{}… ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_with_their_length() {
        assert_eq!(short("client-1").to_string(), "client-1");
        let exact = "x".repeat(128);
        assert_eq!(short(&exact).to_string(), exact);
        let long = "y".repeat(65_000);
        assert_eq!(short(&long).to_string(), format!("{}… (65000 bytes)", "y".repeat(128)));
        // Cut at a character, never inside one.
        let wide = "é".repeat(200);
        assert_eq!(short(&wide).to_string(), format!("{}… (400 bytes)", "é".repeat(128)));
    }
}
