//! Incremental UTF-8 validation across frame and fragment boundaries, so an invalid
//! text message fails as soon as its first bad byte arrives (RFC 6455 §8.1).
//! It validates only; it never copies or decodes.

/// Validates a text message fed in arbitrary chunks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8Validator {
    /// The start of a character whose remaining bytes have not arrived yet.
    carry: [u8; 4],
    carry_len: u8,
}

/// The bytes seen so far can never be valid UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Validator {
    /// Feeds the next bytes of the message.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), InvalidUtf8> {
        if self.carry_len > 0 {
            // Complete the pending character one byte at a time: at most 3 rounds.
            while self.carry_len > 0 {
                let Some((&byte, rest)) = input.split_first() else {
                    return Ok(());
                };
                self.carry[self.carry_len as usize] = byte;
                self.carry_len += 1;
                input = rest;
                match std::str::from_utf8(&self.carry[..self.carry_len as usize]) {
                    Ok(_) => self.carry_len = 0,
                    Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                    Err(_) => {} // still a valid prefix of a character
                }
            }
        }
        match std::str::from_utf8(input) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                let tail = &input[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// The message has ended: a character cut short is invalid.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.carry_len == 0;
        *self = Utf8Validator::default();
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_split_everywhere(bytes: &[u8]) -> bool {
        let whole = std::str::from_utf8(bytes).is_ok();
        for cut in 0..=bytes.len() {
            let mut v = Utf8Validator::default();
            let split = v
                .feed(&bytes[..cut])
                .and_then(|_| v.feed(&bytes[cut..]))
                .and_then(|_| v.finish())
                .is_ok();
            assert_eq!(split, whole, "cut at {cut} of {bytes:?}");
        }
        let mut v = Utf8Validator::default();
        let bytewise = bytes
            .iter()
            .try_for_each(|b| v.feed(&[*b]))
            .and_then(|_| v.finish());
        assert_eq!(bytewise.is_ok(), whole);
        whole
    }

    #[test]
    fn valid_text_passes_when_split_at_every_byte() {
        assert!(validate_split_everywhere("κόσμε 😀 hello ü".as_bytes()));
        assert!(validate_split_everywhere(b""));
    }

    #[test]
    fn invalid_sequences_fail_when_split_at_every_byte() {
        assert!(!validate_split_everywhere(
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"
        ));
        assert!(!validate_split_everywhere(b"\xf4\x90\x80\x80"));
        assert!(!validate_split_everywhere(b"ab\xc0\xaf"));
        assert!(!validate_split_everywhere(b"truncated \xf0\x9f\x98"));
    }

    #[test]
    fn fails_fast_on_first_impossible_byte() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(b"ok \xed"), Ok(()));
        assert_eq!(
            v.feed(b"\xa0"),
            Err(InvalidUtf8),
            "surrogate rejected before message end"
        );
    }
}
