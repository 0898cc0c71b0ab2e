//! Session archives: the object a completed session becomes in S3, and how a replay checks it.
//!
//! The object is `{org}/{agent}/{session}/{session}.ndjson`: newline-delimited JSON, one line per
//! checkpoint (one `append_turns` call, i.e. one proxied model call) with its turns, model,
//! token counts and timestamps. Rendering is deterministic (fields in declaration order, turns
//! by index), so writing a session twice gives the same bytes and the same SHA-256: a retried
//! or duplicated upload never changes what a replay reads.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The media type of an archive object.
pub const CONTENT_TYPE: &str = "application/x-ndjson";

/// The key prefix of everything archived for one session; deleting a session deletes every
/// object under it (also those a future format version may add beside the NDJSON).
pub fn session_prefix(
    org: impl std::fmt::Display,
    agent: impl std::fmt::Display,
    session: impl std::fmt::Display,
) -> String {
    format!("{org}/{agent}/{session}/")
}

/// The object key of a session's archive.
pub fn object_key(
    org: impl std::fmt::Display,
    agent: impl std::fmt::Display,
    session: impl std::fmt::Display,
) -> String {
    let session = session.to_string();
    format!("{}{session}.ndjson", session_prefix(org, agent, &session))
}

/// One turn as archived: what Postgres held, content included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedTurn {
    pub turn_index: i32,
    pub role: String,
    pub content: String,
    pub tokens: Option<i32>,
    pub model: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

/// One line of the archive: the turns one model call added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointLine {
    pub session_id: String,
    pub checkpoint: i32,
    /// The model of the call: the last model named by its turns (the assistant's reply).
    pub model: Option<String>,
    /// The sum of the turns' token counts; absent when no turn has one.
    pub tokens: Option<i64>,
    /// The first and last turn's `created_at`.
    pub started_at: String,
    pub ended_at: String,
    pub turns: Vec<ArchivedTurn>,
}

/// A rendered archive: its bytes and what Postgres records about them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveObject {
    pub bytes: Vec<u8>,
    pub lines: usize,
    /// Lower-case hex.
    pub sha256: String,
}

/// Renders a session's turns, ordered by turn index with their checkpoint numbers, into the
/// archive object. Consecutive turns of one checkpoint make one line.
pub fn render(session_id: &str, turns: Vec<(i32, ArchivedTurn)>) -> ArchiveObject {
    let mut lines: Vec<CheckpointLine> = Vec::new();
    for (checkpoint, turn) in turns {
        match lines.last_mut() {
            Some(line) if line.checkpoint == checkpoint => line.turns.push(turn),
            _ => lines.push(CheckpointLine {
                session_id: session_id.to_string(),
                checkpoint,
                model: None,
                tokens: None,
                started_at: String::new(),
                ended_at: String::new(),
                turns: vec![turn],
            }),
        }
    }
    let mut bytes = Vec::new();
    for line in &mut lines {
        summarise(line);
        // A struct of strings and integers always serialises.
        serde_json::to_writer(&mut bytes, line).expect("a checkpoint line serialises");
        bytes.push(b'\n');
    }
    let sha256 = sha256_hex(&bytes);
    ArchiveObject {
        bytes,
        lines: lines.len(),
        sha256,
    }
}

fn summarise(line: &mut CheckpointLine) {
    line.model = line.turns.iter().rev().find_map(|t| t.model.clone());
    let counted: Vec<i64> = line.turns.iter().filter_map(|t| t.tokens.map(i64::from)).collect();
    line.tokens = (!counted.is_empty()).then(|| counted.iter().sum());
    line.started_at = line.turns.first().map(|t| t.created_at.clone()).unwrap_or_default();
    line.ended_at = line.turns.last().map(|t| t.created_at.clone()).unwrap_or_default();
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Why an archive read back cannot be replayed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplayError {
    #[error("the archive's SHA-256 is {actual}, but {expected} was recorded when it was written")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("line {line} of the archive is not a checkpoint: {reason}")]
    Malformed { line: usize, reason: String },
}

/// Checks an archive read back from S3 against the SHA-256 recorded when it was written, then
/// parses its lines. A damaged object is refused whole: a replay never shows part of one.
pub fn verify(bytes: &[u8], expected_sha256: &str) -> Result<Vec<CheckpointLine>, ReplayError> {
    let actual = sha256_hex(bytes);
    if !actual.eq_ignore_ascii_case(expected_sha256) {
        return Err(ReplayError::ChecksumMismatch {
            expected: expected_sha256.to_ascii_lowercase(),
            actual,
        });
    }
    bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_slice(line).map_err(|e| ReplayError::Malformed {
                line: i + 1,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// The wait before the next attempt of a failed upload or deletion: doubling from 1 s, at most
/// 5 minutes, so an S3 outage costs a few requests a minute and archives catch up soon after.
pub fn retry_delay(attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(9);
    Duration::from_secs((1u64 << exponent).min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(i: i32, role: &str, content: &str, tokens: Option<i32>, model: Option<&str>) -> ArchivedTurn {
        ArchivedTurn {
            turn_index: i,
            role: role.into(),
            content: content.into(),
            tokens,
            model: model.map(Into::into),
            created_at: format!("2026-11-30T10:00:0{i}Z"),
        }
    }

    fn sample() -> Vec<(i32, ArchivedTurn)> {
        vec![
            (1, turn(1, "user", "hi", Some(3), None)),
            (1, turn(2, "assistant", "hello\nthere", Some(5), Some("gpt-4o"))),
            (2, turn(3, "user", "again", None, None)),
        ]
    }

    #[test]
    fn keys_nest_org_agent_session() {
        assert_eq!(session_prefix("o", "a", "s"), "o/a/s/");
        assert_eq!(object_key("o", "a", "s"), "o/a/s/s.ndjson");
    }

    #[test]
    fn one_line_per_checkpoint_with_its_model_tokens_and_times() {
        let object = render("s", sample());
        assert_eq!(object.lines, 2);
        let text = String::from_utf8(object.bytes.clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "newlines inside contents are escaped");
        let lines = verify(&object.bytes, &object.sha256).unwrap();
        assert_eq!(lines[0].checkpoint, 1);
        assert_eq!(lines[0].turns.len(), 2);
        assert_eq!(lines[0].model.as_deref(), Some("gpt-4o"));
        assert_eq!(lines[0].tokens, Some(8));
        assert_eq!(lines[0].started_at, "2026-11-30T10:00:01Z");
        assert_eq!(lines[0].ended_at, "2026-11-30T10:00:02Z");
        assert_eq!(lines[1].tokens, None);
        assert_eq!(lines[1].turns[0].content, "again");
    }

    #[test]
    fn rendering_twice_gives_the_same_object() {
        assert_eq!(render("s", sample()), render("s", sample()));
    }

    #[test]
    fn an_empty_session_is_an_empty_object() {
        let object = render("s", Vec::new());
        assert_eq!((object.lines, object.bytes.len()), (0, 0));
        assert_eq!(verify(&[], &object.sha256).unwrap(), Vec::new());
    }

    #[test]
    fn a_changed_byte_fails_the_checksum() {
        let object = render("s", sample());
        let mut damaged = object.bytes.clone();
        damaged[10] ^= 1;
        assert!(matches!(
            verify(&damaged, &object.sha256),
            Err(ReplayError::ChecksumMismatch { .. })
        ));
        assert!(matches!(
            verify(b"", &object.sha256),
            Err(ReplayError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn a_line_that_is_not_a_checkpoint_is_malformed() {
        let bytes = b"{\"x\":1}\n";
        assert!(matches!(
            verify(bytes, &sha256_hex(bytes)),
            Err(ReplayError::Malformed { line: 1, .. })
        ));
    }

    #[test]
    fn retries_back_off_to_five_minutes() {
        let waits: Vec<u64> = [0, 1, 2, 3, 9, 10, 50]
            .iter()
            .map(|a| retry_delay(*a).as_secs())
            .collect();
        assert_eq!(waits, vec![1, 1, 2, 4, 256, 300, 300]);
    }
}
