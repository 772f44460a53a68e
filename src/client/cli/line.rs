//! What one interactive stdin line of `ringcast client` asks for: a message to say,
//! or a `/command`. Pure parsing; `cli/mod.rs` acts on the result.

/// One parsed input line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// Text for the first joined room, or a broadcast when in no room.
    Say(String),
    Join(String),
    Leave(String),
    /// List the joined rooms.
    Rooms,
    Msg {
        to: String,
        text: String,
    },
    Meta {
        key: String,
        value: String,
    },
    Quit,
    Help,
    /// A blank line: nothing to do.
    Empty,
}

/// Why a line is not understood; the session goes on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("unknown command /{0} (/help lists them; start a line with // to say a text that begins with /)")]
    Unknown(String),
    #[error("usage: {0}")]
    Usage(&'static str),
}

/// The commands, for `/help`.
pub const HELP: &str = "\
text           say text in the first joined room (a broadcast when in no room)
//text         say /text
/join ROOM     join a room
/leave ROOM    leave a room
/rooms         list the joined rooms
/msg ID TEXT   private message to a client_id
/meta KEY=VAL  set a metadata key (the value is a string)
/quit          close the connection and exit (so does end of input)";

/// Parses one line (with or without its line ending).
pub fn parse_line(line: &str) -> Result<Line, LineError> {
    let line = line.trim_end_matches(['\n', '\r']);
    if let Some(text) = line.strip_prefix("//") {
        return Ok(Line::Say(format!("/{text}")));
    }
    let Some(command) = line.strip_prefix('/') else {
        return Ok(if line.trim().is_empty() {
            Line::Empty
        } else {
            Line::Say(line.to_string())
        });
    };
    let (word, rest) = command
        .split_once(char::is_whitespace)
        .unwrap_or((command, ""));
    let rest = rest.trim();
    let room = |usage| {
        if rest.is_empty() {
            Err(LineError::Usage(usage))
        } else {
            Ok(rest.to_string())
        }
    };
    match word {
        "join" => room("/join ROOM").map(Line::Join),
        "leave" => room("/leave ROOM").map(Line::Leave),
        "rooms" => Ok(Line::Rooms),
        "msg" => {
            let (to, text) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            if to.is_empty() {
                return Err(LineError::Usage("/msg CLIENT_ID TEXT"));
            }
            Ok(Line::Msg {
                to: to.to_string(),
                text: text.trim_start().to_string(),
            })
        }
        "meta" => parse_meta(rest)
            .map(|(key, value)| Line::Meta { key, value })
            .map_err(|_| LineError::Usage("/meta KEY=VALUE")),
        "quit" | "exit" => Ok(Line::Quit),
        "help" | "?" => Ok(Line::Help),
        other => Err(LineError::Unknown(other.to_string())),
    }
}

/// `KEY=VALUE`, with a non-empty key (for `/meta` and `--meta`).
pub fn parse_meta(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Line {
        parse_line(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    #[test]
    fn plain_text_is_said_as_it_is() {
        assert_eq!(parse("hello  world \n"), Line::Say("hello  world ".into()));
        assert_eq!(parse("  indented\r\n"), Line::Say("  indented".into()));
        assert_eq!(
            parse("//join is a word"),
            Line::Say("/join is a word".into())
        );
        assert_eq!(parse(""), Line::Empty);
        assert_eq!(parse("   \n"), Line::Empty);
    }

    #[test]
    fn commands_take_their_arguments() {
        assert_eq!(parse("/join lobby"), Line::Join("lobby".into()));
        assert_eq!(parse("/join  big room \n"), Line::Join("big room".into()));
        assert_eq!(parse("/leave lobby"), Line::Leave("lobby".into()));
        assert_eq!(parse("/rooms"), Line::Rooms);
        assert_eq!(
            parse("/msg client_0_1_0 hi there"),
            Line::Msg {
                to: "client_0_1_0".into(),
                text: "hi there".into()
            }
        );
        assert_eq!(
            parse("/meta name=Ann Lee"),
            Line::Meta {
                key: "name".into(),
                value: "Ann Lee".into()
            }
        );
        assert_eq!(
            parse("/meta k="),
            Line::Meta {
                key: "k".into(),
                value: String::new()
            }
        );
        assert_eq!(parse("/quit"), Line::Quit);
        assert_eq!(parse("/help"), Line::Help);
    }

    #[test]
    fn bad_commands_say_how_to_use_them() {
        assert_eq!(parse_line("/join"), Err(LineError::Usage("/join ROOM")));
        assert_eq!(parse_line("/leave  "), Err(LineError::Usage("/leave ROOM")));
        assert_eq!(
            parse_line("/msg"),
            Err(LineError::Usage("/msg CLIENT_ID TEXT"))
        );
        assert_eq!(
            parse_line("/meta novalue"),
            Err(LineError::Usage("/meta KEY=VALUE"))
        );
        assert_eq!(
            parse_line("/meta =x"),
            Err(LineError::Usage("/meta KEY=VALUE"))
        );
        assert_eq!(
            parse_line("/dance"),
            Err(LineError::Unknown("dance".into()))
        );
    }

    #[test]
    fn meta_flags_split_at_the_first_equals_sign() {
        assert_eq!(parse_meta("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_meta("abc").is_err());
    }
}
