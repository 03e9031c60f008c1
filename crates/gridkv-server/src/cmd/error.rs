//! Why a command was refused before it ran ([`ParseError`]), and the
//! error reply for an operation the node failed ([`error_reply`]; the
//! codes are tabled in the [module docs](super)).

use std::borrow::Cow;

use gridkv::Error;

/// A command refused before it ran: nothing was read or written. Its
/// `Display` is the error reply, code first, as Redis words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No such command (the name shown is cut at 64 characters).
    #[error("ERR unknown command '{0}'")]
    UnknownCommand(String),
    /// A known command with too few or too many arguments.
    #[error("ERR wrong number of arguments for '{0}' command")]
    Arity(&'static str),
    /// An option this command does not take, or one given twice.
    #[error("ERR syntax error")]
    Syntax,
    /// An argument that must be an integer is not, or overflows.
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    /// An expiry that is not positive, or too large (`SET ... EX 0`,
    /// `SETEX k 0 v`), in the named command.
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpire(&'static str),
    /// An `EXPIRE` option that needs an atomic read-modify-write.
    #[error("ERR EXPIRE NX|XX|GT|LT is not supported: GridKV has no atomic conditional writes")]
    ConditionalExpire,
    /// A subcommand or argument the command refuses, with its own message.
    #[error("{0}")]
    Refused(Cow<'static, str>),
    /// A refusal of a command a client must log in for: a client not
    /// logged in gets `-NOAUTH` instead (see the gate); others see the
    /// refusal itself.
    #[error("{0}")]
    Guarded(Box<ParseError>),
}

/// The error reply for a failed operation: its first word is the code
/// (see the module docs).
pub fn error_reply(e: &Error) -> String {
    match e {
        Error::QuorumNotReached { .. } => format!("NOQUORUM {e}"),
        Error::Timeout { .. } => format!("TIMEOUT {e}"),
        Error::Backpressure => format!("BUSY {e}"),
        Error::ShuttingDown => format!("SHUTDOWN {e}"),
        // Nothing was written and retrying later (or through another node)
        // helps: the node is not serving yet, its restart barrier holds,
        // or its clock is too far from the cluster's to stamp writes.
        // Or other writers kept changing the key a read-modify-write read.
        Error::NotReady { .. }
        | Error::RestartBarrier { .. }
        | Error::ClockOffset { .. }
        | Error::Contended { .. } => {
            format!("TRYAGAIN {e}")
        }
        _ => format!("ERR {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_name_the_failure() {
        let e = Error::QuorumNotReached {
            answered: 1,
            required: 2,
        };
        assert!(error_reply(&e).starts_with("NOQUORUM quorum not reached: 1 of 2"));
        assert!(error_reply(&Error::Backpressure).starts_with("BUSY "));
        assert!(error_reply(&Error::Contended { attempts: 5 }).starts_with("TRYAGAIN contended"));
        let forming = Error::NotReady {
            missing: "cluster forming: waiting for a (the smallest id) to form it".into(),
        };
        assert_eq!(
            error_reply(&forming),
            "TRYAGAIN not ready: cluster forming: waiting for a (the smallest id) to form it"
        );
        assert!(
            error_reply(&Error::ValueTooLarge { len: 9, max: 8 })
                .starts_with("ERR value is 9 bytes")
        );
    }

    #[test]
    fn clock_holds_are_tryagain_and_name_the_cause() {
        let barrier = error_reply(&Error::RestartBarrier {
            remaining_ms: 2_750,
        });
        assert!(
            barrier.starts_with("TRYAGAIN restart barrier: "),
            "{barrier}"
        );
        assert!(barrier.contains("2750 ms left"), "{barrier}");
        let offset = error_reply(&Error::ClockOffset {
            offset_ms: -3_600_000,
            distance_ms: 3_599_990,
            bound_ms: 5_000,
        });
        assert!(offset.starts_with("TRYAGAIN clock offset: "), "{offset}");
        assert!(
            offset.contains("-3600000 ms from the cluster's median"),
            "{offset}"
        );
        assert!(offset.contains("bound 5000 ms"), "{offset}");
    }

    #[test]
    fn parse_errors_read_as_redis_words_them() {
        assert_eq!(
            ParseError::Arity("get").to_string(),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            ParseError::UnknownCommand("FOO".into()).to_string(),
            "ERR unknown command 'FOO'"
        );
        assert_eq!(ParseError::Syntax.to_string(), "ERR syntax error");
    }
}
