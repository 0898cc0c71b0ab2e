//! Server-side sessions of signed-in operators. The browser holds a random id (256 bits); the
//! store keys sessions by the id's SHA-256, so a memory dump shows no usable cookie. A session
//! keeps the operator's token (the API is called with it), what the auth service answered,
//! and its CSRF token. Sessions live in this process: a restart signs everyone out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use sha2::{Digest, Sha256};

use crate::Identity;

/// Sessions kept at most; at the bound, the one idle longest goes first.
const MAX_SESSIONS: usize = 10_000;

pub struct Session {
    pub token: String,
    pub identity: Identity,
    pub csrf: String,
}

struct Entry {
    session: Arc<Session>,
    started: Instant,
    last_seen: Instant,
}

/// Why a cookie opens no session.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// No cookie, or one this process never issued (or already forgot).
    Unknown,
    Expired,
}

pub struct Sessions {
    entries: Mutex<HashMap<String, Entry>>,
    idle: Duration,
    max: Duration,
}

/// 32 random bytes, hex: session ids and CSRF tokens.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

fn key(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

impl Sessions {
    pub fn new(idle: Duration, max: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            idle,
            max,
        }
    }

    /// Starts a session; answers the id for the cookie.
    pub fn start(&self, token: String, identity: Identity) -> String {
        let id = random_token();
        let now = Instant::now();
        let session = Arc::new(Session {
            token,
            identity,
            csrf: random_token(),
        });
        let mut entries = self.lock();
        entries.retain(|_, e| !self.over(e, now));
        if entries.len() >= MAX_SESSIONS {
            if let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.last_seen).map(|(k, _)| k.clone()) {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            key(&id),
            Entry {
                session,
                started: now,
                last_seen: now,
            },
        );
        id
    }

    /// The session of a cookie's id, marked used now.
    pub fn open(&self, id: Option<&str>) -> Result<Arc<Session>, Refused> {
        let id = id.ok_or(Refused::Unknown)?;
        let now = Instant::now();
        let mut entries = self.lock();
        let k = key(id);
        let entry = entries.get_mut(&k).ok_or(Refused::Unknown)?;
        if self.over(entry, now) {
            entries.remove(&k);
            return Err(Refused::Expired);
        }
        entry.last_seen = now;
        Ok(Arc::clone(&entry.session))
    }

    /// Ends a session (logout); unknown ids are ignored.
    pub fn end(&self, id: Option<&str>) {
        if let Some(id) = id {
            self.lock().remove(&key(id));
        }
    }

    /// How long a cookie should live: the absolute expiry.
    pub fn max_age(&self) -> Duration {
        self.max
    }

    fn over(&self, entry: &Entry, now: Instant) -> bool {
        now.duration_since(entry.last_seen) >= self.idle || now.duration_since(entry.started) >= self.max
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves the map consistent (every change is one call).
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            org: uuid::Uuid::nil(),
            agent: None,
            scopes: vec!["admin".into()],
            token_prefix: "ibx_abcd".into(),
        }
    }

    #[test]
    fn a_session_opens_with_its_id_only_and_ends_at_logout() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        let id = sessions.start("ibx_secret".into(), identity());
        assert_eq!(id.len(), 64);
        assert_eq!(sessions.open(Some(&id)).unwrap().token, "ibx_secret");
        assert_eq!(sessions.open(Some("forged")).err(), Some(Refused::Unknown));
        assert_eq!(sessions.open(None).err(), Some(Refused::Unknown));
        sessions.end(Some(&id));
        assert_eq!(sessions.open(Some(&id)).err(), Some(Refused::Unknown));
    }

    #[test]
    fn an_idle_session_expires() {
        let sessions = Sessions::new(Duration::from_millis(20), Duration::from_secs(600));
        let id = sessions.start("t".into(), identity());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(sessions.open(Some(&id)).err(), Some(Refused::Expired));
    }

    #[test]
    fn a_used_session_still_ends_at_its_absolute_expiry() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_millis(40));
        let id = sessions.start("t".into(), identity());
        std::thread::sleep(Duration::from_millis(25));
        assert!(sessions.open(Some(&id)).is_ok());
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(sessions.open(Some(&id)).err(), Some(Refused::Expired));
    }

    #[test]
    fn ids_and_csrf_tokens_are_distinct_and_stored_hashed() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        let a = sessions.start("t".into(), identity());
        let b = sessions.start("t".into(), identity());
        assert_ne!(a, b);
        assert_ne!(
            sessions.open(Some(&a)).unwrap().csrf,
            sessions.open(Some(&b)).unwrap().csrf
        );
        assert!(!sessions.lock().contains_key(&a), "keyed by the id's hash, not the id");
    }
}
