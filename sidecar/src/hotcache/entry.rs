//! One hot-cache entry and its binary encoding (version byte, fixed-width little-endian fields,
//! the embedding, then the UTF-8 content): about 1.6 KB per memory, decoded without parsing.

use chrono::{DateTime, Utc};
use ibex_engine::context::Category;
use ibex_engine::score::MemorySignals;
use ibex_engine::EMBEDDING_DIM;
use uuid::Uuid;

const VERSION: u8 = 1;
/// version, category, confidence f32, useful i32, not useful i32, accesses i64, touched ms i64.
const HEADER: usize = 1 + 1 + 4 + 4 + 4 + 8 + 8;
const EMBEDDING_BYTES: usize = EMBEDDING_DIM * 4;

#[derive(Clone, Debug, PartialEq)]
pub struct HotEntry {
    pub id: Uuid,
    pub category: Category,
    pub content: String,
    pub confidence: f32,
    pub useful_count: i32,
    pub not_useful_count: i32,
    pub access_count: i64,
    /// `coalesce(last_accessed_at, occurred_at, created_at)`.
    pub touched_at: DateTime<Utc>,
    pub embedding: Vec<f32>,
}

impl HotEntry {
    /// The score's inputs as of `now`.
    pub fn signals(&self, now: DateTime<Utc>) -> MemorySignals {
        let hours = (now - self.touched_at).num_milliseconds() as f64 / 3_600_000.0;
        MemorySignals {
            confidence: f64::from(self.confidence),
            useful_count: i64::from(self.useful_count),
            not_useful_count: i64::from(self.not_useful_count),
            access_count: self.access_count,
            hours_since_touch: hours,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + EMBEDDING_BYTES + self.content.len());
        out.push(VERSION);
        out.push(match self.category {
            Category::Procedural => 0,
            Category::Declarative => 1,
            Category::Episodic => 2,
        });
        out.extend_from_slice(&self.confidence.to_le_bytes());
        out.extend_from_slice(&self.useful_count.to_le_bytes());
        out.extend_from_slice(&self.not_useful_count.to_le_bytes());
        out.extend_from_slice(&self.access_count.to_le_bytes());
        out.extend_from_slice(&self.touched_at.timestamp_millis().to_le_bytes());
        for x in &self.embedding {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(self.content.as_bytes());
        out
    }

    /// `None` for anything malformed (another version, truncated): treated as absent.
    pub fn decode(id: Uuid, bytes: &[u8]) -> Option<Self> {
        if bytes.len() < HEADER + EMBEDDING_BYTES || bytes[0] != VERSION {
            return None;
        }
        let category = match bytes[1] {
            0 => Category::Procedural,
            1 => Category::Declarative,
            2 => Category::Episodic,
            _ => return None,
        };
        let f4 = |at: usize| <[u8; 4]>::try_from(&bytes[at..at + 4]).ok();
        let f8 = |at: usize| <[u8; 8]>::try_from(&bytes[at..at + 8]).ok();
        let confidence = f32::from_le_bytes(f4(2)?);
        let useful_count = i32::from_le_bytes(f4(6)?);
        let not_useful_count = i32::from_le_bytes(f4(10)?);
        let access_count = i64::from_le_bytes(f8(14)?);
        let touched_at = DateTime::from_timestamp_millis(i64::from_le_bytes(f8(22)?))?;
        let embedding = bytes[HEADER..HEADER + EMBEDDING_BYTES]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let content = std::str::from_utf8(&bytes[HEADER + EMBEDDING_BYTES..])
            .ok()?
            .to_string();
        Some(Self {
            id,
            category,
            content,
            confidence,
            useful_count,
            not_useful_count,
            access_count,
            touched_at,
            embedding,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> HotEntry {
        HotEntry {
            id: Uuid::from_u128(7),
            category: Category::Episodic,
            content: "Met Ana in Lisboa — café ☕".into(),
            confidence: 0.75,
            useful_count: 3,
            not_useful_count: 1,
            access_count: 42,
            touched_at: DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
            embedding: (0..EMBEDDING_DIM).map(|i| i as f32 / 384.0).collect(),
        }
    }

    #[test]
    fn round_trip() {
        let e = entry();
        let bytes = e.encode();
        assert_eq!(HotEntry::decode(e.id, &bytes), Some(e));
    }

    #[test]
    fn malformed_values_are_absent() {
        let bytes = entry().encode();
        assert_eq!(HotEntry::decode(Uuid::nil(), &bytes[..100]), None);
        let mut other = bytes.clone();
        other[0] = 9;
        assert_eq!(HotEntry::decode(Uuid::nil(), &other), None);
        let mut bad_category = bytes;
        bad_category[1] = 5;
        assert_eq!(HotEntry::decode(Uuid::nil(), &bad_category), None);
    }

    #[test]
    fn signals_age_with_time() {
        let e = entry();
        let s = e.signals(e.touched_at + chrono::Duration::hours(168));
        assert!((s.hours_since_touch - 168.0).abs() < 1e-9);
        assert_eq!((s.useful_count, s.not_useful_count, s.access_count), (3, 1, 42));
    }
}
