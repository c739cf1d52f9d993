//! tarkd's text log lines carry what plugins write (their log messages,
//! their workers' stderr, the targets of their refused host calls). A
//! message with a newline (or `\r`, or U+2028) in it used to start what read
//! as a well-formed tarkd line of the plugin's choosing. In text format every
//! field, the message included, goes through [`EscapedFields`], which writes
//! control characters, Unicode line and paragraph separators and bidi
//! overrides as escapes; one event is one line whatever it quotes. (The JSON
//! format escapes by construction.)

use std::fmt::{self, Write};

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

/// tracing-subscriber's default field format, escaped ([`escape_into`]).
#[derive(Debug, Default)]
pub struct EscapedFields(DefaultFields);

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut plain = String::new();
        self.0.format_fields(Writer::new(&mut plain), fields)?;
        escape_into(&plain, &mut writer)
    }
}

/// Whether a character must not reach a text log line as it is: controls
/// (C0, DEL, C1, NEL), the Unicode line and paragraph separators, and the
/// marks and overrides that reorder text on screen.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
        )
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Writes `text` with each unsafe character as `\n`, `\r`, `\t` or `\u{…}`.
pub fn escape_into(text: &str, out: &mut impl Write) -> fmt::Result {
    let mut rest = text;
    while let Some(at) = rest.find(unsafe_char) {
        out.write_str(&rest[..at])?;
        let Some(c) = rest[at..].chars().next() else {
            break;
        };
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c => write!(out, "\\u{{{:x}}}", u32::from(c))?,
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.write_str(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = String::new();
        let _ = escape_into(text, &mut out);
        out
    }

    #[test]
    fn every_line_breaking_or_reordering_character_is_escaped() {
        let cases = [
            ("plain text, é ü 漢字", "plain text, é ü 漢字"),
            ("a\nb", "a\\nb"),
            ("a\r\nb", "a\\r\\nb"),
            ("tab\there", "tab\\there"),
            ("\u{1b}[31mred", "\\u{1b}[31mred"),
            ("nul\0", "nul\\u{0}"),
            ("del\u{7f}", "del\\u{7f}"),
            ("nel\u{85}x", "nel\\u{85}x"),
            ("ls\u{2028}ps\u{2029}", "ls\\u{2028}ps\\u{2029}"),
            ("rlo\u{202e}txt", "rlo\\u{202e}txt"),
            ("isolate\u{2066}x\u{2069}", "isolate\\u{2066}x\\u{2069}"),
            ("back\\slash", "back\\slash"),
        ];
        for (input, want) in cases {
            assert_eq!(escaped(input), want, "{input:?}");
        }
        // Exhaustively: no escaped char survives, and nothing else changes.
        for c in (0..=0x3000u32).filter_map(char::from_u32) {
            let out = escaped(&c.to_string());
            assert_eq!(out.contains(c), !unsafe_char(c), "{c:?} -> {out:?}");
            assert!(!out.contains('\n') && !out.contains('\r'));
        }
    }

    #[test]
    fn a_forged_line_stays_inside_its_event() {
        use tracing_subscriber::layer::SubscriberExt;
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(EscapedFields::default())
                .with_ansi(false)
                .with_writer(move || Sink(sink.clone())),
        );
        let forged = "done\n2026-01-01T00:00:00Z  INFO tarkd: admin approved shell\u{2028}x";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "plugin", plugin = %"evil\rname", "{forged}");
        });
        let text = String::from_utf8_lossy(&buf.lock().map(|b| b.clone()).unwrap_or_default())
            .into_owned();
        assert_eq!(text.matches('\n').count(), 1, "{text:?}");
        assert!(text.ends_with('\n') && !text.contains('\r') && !text.contains('\u{2028}'));
        assert!(
            text.contains("done\\n2026-01-01") && text.contains("evil\\rname"),
            "{text}"
        );
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(b);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
