//! Reading a command's arguments: case-insensitive keywords and integers,
//! as Redis reads them.

/// Whether `arg` is the keyword `word`, in any case.
pub(crate) fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// `arg` as a decimal `i64`, if it is one.
pub(crate) fn parse_int(arg: &[u8]) -> Option<i64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_and_integers() {
        assert!(is(b"ex", "EX"));
        assert!(!is(b"exx", "EX"));
        assert_eq!(parse_int(b"-12"), Some(-12));
        assert_eq!(parse_int(b"1.5"), None);
        assert_eq!(parse_int(b"99999999999999999999"), None);
    }
}
