//! Cost control per principal: a request rate (a token bucket holding one
//! minute's worth, refilled continuously) and context tokens served per UTC
//! day, both from the registry (`[limits]`, or a principal's own).
//!
//! Daily usage is shared by every process on the data dir through
//! `usage/<date>.json`: each process adds what it served since its last
//! flush (at most every few seconds, and when it exits) under the file's
//! own lock, and reads back everyone's total. A process killed between
//! flushes loses at most those few seconds of counting, never an answer.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::civil::Date;

use crate::error::{Error, Result};

/// How often served tokens are added to the shared daily file.
const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// At most one audit record of refusals per principal per this long.
const AUDIT_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Default)]
struct State {
    buckets: HashMap<String, Bucket>,
    day: Option<Date>,
    /// Everyone's tokens today as of the last flush.
    shared: BTreeMap<String, u64>,
    /// Tokens this process served since then.
    unflushed: BTreeMap<String, u64>,
    /// Tokens set aside for answers being computed now.
    reserved: BTreeMap<String, u64>,
    last_flush: Option<Instant>,
    last_audit: HashMap<String, Instant>,
}

/// The meter every admission and answer goes through.
#[derive(Debug)]
pub(crate) struct Meter {
    dir: PathBuf,
    state: Mutex<State>,
}

/// A refusal, and whether it is the first for its principal in a while
/// (and so should be audited).
#[derive(Debug)]
pub(crate) struct Refused {
    pub error: Error,
    pub audit: bool,
}

impl Meter {
    pub fn new(data_dir: &std::path::Path) -> Meter {
        Meter {
            dir: data_dir.join("usage"),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one request from `who`'s bucket of `per_minute`.
    pub fn request(&self, who: &str, per_minute: u32) -> std::result::Result<(), Refused> {
        let mut st = self.lock();
        let now = Instant::now();
        let capacity = f64::from(per_minute);
        let rate = capacity / 60.0;
        let b = st.buckets.entry(who.to_string()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(capacity);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - b.tokens) / rate).ceil().max(1.0) as u64;
        Err(refuse(
            &mut st,
            who,
            Error::Limited {
                reason: format!("more than {per_minute} requests per minute"),
                retry_after_secs: wait,
            },
        ))
    }

    /// Sets aside up to `want` of what `who` may still be served today
    /// under `per_day` (answers computed at the same time cannot spend the
    /// same tokens twice); refused when nothing is left (retry after the
    /// next UTC midnight). Settle it with [`Reservation::settle`]; dropped
    /// unsettled, it is given back.
    pub fn reserve(
        &self,
        who: &str,
        per_day: u64,
        want: u64,
        now: Timestamp,
    ) -> std::result::Result<Reservation<'_>, Refused> {
        let mut st = self.lock();
        self.roll(&mut st, now);
        let get = |m: &BTreeMap<String, u64>| m.get(who).copied().unwrap_or(0);
        let used = get(&st.shared) + get(&st.unflushed) + get(&st.reserved);
        if used < per_day {
            let granted = want.min(per_day - used);
            *st.reserved.entry(who.to_string()).or_insert(0) += granted;
            return Ok(Reservation {
                meter: self,
                who: who.to_string(),
                granted,
                room: per_day - used,
                now,
                settled: false,
            });
        }
        Err(refuse(
            &mut st,
            who,
            Error::Limited {
                reason: format!("daily quota of {per_day} context tokens used"),
                retry_after_secs: secs_to_midnight(now),
            },
        ))
    }

    /// Gives back a reservation of `granted` and counts `tokens` served to
    /// `who`; adds them to the shared file when the last flush is old enough.
    fn settle(&self, who: &str, granted: u64, tokens: u64, now: Timestamp) {
        let mut st = self.lock();
        if let Some(r) = st.reserved.get_mut(who) {
            *r = r.saturating_sub(granted);
        }
        self.roll(&mut st, now);
        if tokens > 0 {
            *st.unflushed.entry(who.to_string()).or_insert(0) += tokens;
        }
        if st.last_flush.is_none_or(|t| t.elapsed() >= FLUSH_EVERY)
            && let Err(e) = self.flush_locked(&mut st)
        {
            tracing::warn!(error = %e, "could not record token usage; kept in memory");
        }
    }

    /// Adds what this process served to the shared file now.
    pub fn flush(&self) -> Result<()> {
        let mut st = self.lock();
        self.flush_locked(&mut st)
    }

    /// A new UTC day starts from the shared file for that day.
    fn roll(&self, st: &mut State, now: Timestamp) {
        let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
        if st.day == Some(today) {
            return;
        }
        if st.day.is_some()
            && let Err(e) = self.flush_locked(st)
        {
            tracing::warn!(error = %e, "could not record yesterday's token usage");
        }
        st.day = Some(today);
        st.unflushed.clear();
        st.shared = self.read(today).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "token usage file unreadable; counting from zero");
            BTreeMap::new()
        });
    }

    fn path(&self, day: Date) -> PathBuf {
        self.dir.join(format!("{day}.json"))
    }

    fn read(&self, day: Date) -> Result<BTreeMap<String, u64>> {
        let path = self.path(day);
        match std::fs::read(&path) {
            Ok(b) if b.len() <= 16 << 20 => serde_json::from_slice(&b)
                .map_err(|e| Error::internal_msg(format!("{}: {e}", path.display()))),
            Ok(_) => Err(Error::internal_msg(format!("{} is too large", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(e.into()),
        }
    }

    fn flush_locked(&self, st: &mut State) -> Result<()> {
        let Some(day) = st.day else {
            return Ok(());
        };
        st.last_flush = Some(Instant::now());
        if st.unflushed.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        let _lock = registry::fsutil::DirLock::acquire(&self.dir)?;
        let mut total = self.read(day)?;
        for (who, n) in std::mem::take(&mut st.unflushed) {
            *total.entry(who).or_insert(0) += n;
        }
        registry::fsutil::write_atomic(&self.path(day), &serde_json::to_vec(&total).unwrap_or_default())?;
        st.shared = total;
        Ok(())
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "could not record token usage at exit");
        }
    }
}

impl Meter {
    /// A refusal of `who` for `error`, audited at most once in a while.
    pub fn refusal(&self, who: &str, error: Error) -> Refused {
        refuse(&mut self.lock(), who, error)
    }
}

/// A refusal, to be audited only if it is `who`'s first in a while.
fn refuse(st: &mut State, who: &str, error: Error) -> Refused {
    let audit = first_in_a_while(st, who, Instant::now());
    Refused { error, audit }
}

/// Tokens set aside for one answer.
#[derive(Debug)]
pub(crate) struct Reservation<'a> {
    meter: &'a Meter,
    who: String,
    granted: u64,
    /// What was left of the quota when reserved.
    room: u64,
    now: Timestamp,
    settled: bool,
}

impl Reservation<'_> {
    /// The most this answer may deliver.
    pub fn granted(&self) -> u64 {
        self.granted
    }

    /// What was left of today's quota when this was reserved: an answer
    /// larger than this must be refused, not served.
    pub fn room(&self) -> u64 {
        self.room
    }

    /// Counts what was delivered.
    pub fn settle(mut self, delivered: u64) {
        self.settled = true;
        self.meter.settle(&self.who, self.granted, delivered, self.now);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.meter.settle(&self.who, self.granted, 0, self.now);
        }
    }
}

fn first_in_a_while(st: &mut State, who: &str, now: Instant) -> bool {
    match st.last_audit.get(who) {
        Some(t) if now.duration_since(*t) < AUDIT_EVERY => false,
        _ => {
            st.last_audit.insert(who.to_string(), now);
            true
        }
    }
}

pub(crate) fn secs_to_midnight(now: Timestamp) -> u64 {
    let z = now.to_zoned(jiff::tz::TimeZone::UTC);
    let next = z
        .date()
        .tomorrow()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok());
    match next {
        Some(n) => (n.timestamp().as_second() - now.as_second()).max(1) as u64,
        None => 86_400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_a_minute_then_refills() {
        let tmp = tempfile::tempdir().unwrap();
        let m = Meter::new(tmp.path());
        for _ in 0..3 {
            m.request("a", 3).unwrap();
        }
        let r = m.request("a", 3).unwrap_err();
        assert!(r.audit);
        match r.error {
            Error::Limited { retry_after_secs, .. } => assert!((1..=20).contains(&retry_after_secs)),
            e => panic!("{e:?}"),
        }
        // Refusals are audited once in a while, not each time.
        assert!(!m.request("a", 3).unwrap_err().audit);
        // Another principal has its own bucket.
        m.request("b", 3).unwrap();
    }

    #[test]
    fn the_daily_quota_is_shared_by_processes_and_resets_at_midnight() {
        let tmp = tempfile::tempdir().unwrap();
        let noon: Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        let one = Meter::new(tmp.path());
        let two = Meter::new(tmp.path());
        let left = |m: &Meter| m.reserve("a", 1000, u64::MAX, noon).map(|r| r.granted());
        assert_eq!(left(&one).unwrap(), 1000);
        one.reserve("a", 1000, 600, noon).unwrap().settle(600);
        one.flush().unwrap();
        two.reserve("a", 1000, 300, noon).unwrap().settle(300);
        two.flush().unwrap();
        // `one` sees `two`'s usage once it has flushed.
        one.flush().unwrap();
        let before = left(&one).unwrap();
        assert!(before == 100 || before == 400, "{before}");
        one.reserve("a", 1000, 100, noon).unwrap().settle(100);
        one.flush().unwrap();
        let r = one.reserve("a", 1000, 1, noon).unwrap_err();
        match r.error {
            Error::Limited { retry_after_secs, .. } => assert_eq!(retry_after_secs, 12 * 3600),
            e => panic!("{e:?}"),
        }
        let tomorrow: Timestamp = "2026-12-03T00:00:01Z".parse().unwrap();
        assert_eq!(
            one.reserve("a", 1000, u64::MAX, tomorrow).unwrap().granted(),
            1000
        );
        // A new process reads today's total back.
        drop(two);
        let three = Meter::new(tmp.path());
        assert!(three.reserve("a", 1000, 1, noon).is_err());
    }

    #[test]
    fn concurrent_answers_cannot_spend_the_same_tokens() {
        let tmp = tempfile::tempdir().unwrap();
        let noon: Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        let m = Meter::new(tmp.path());
        let first = m.reserve("a", 1000, 700, noon).unwrap();
        let second = m.reserve("a", 1000, 700, noon).unwrap();
        assert_eq!((first.granted(), second.granted()), (700, 300));
        assert!(m.reserve("a", 1000, 1, noon).is_err());
        // What an answer did not use (or an answer that failed) comes back.
        first.settle(200);
        drop(second);
        assert_eq!(m.reserve("a", 1000, u64::MAX, noon).unwrap().granted(), 800);
    }
}
