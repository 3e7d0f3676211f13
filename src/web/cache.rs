//! Web answers kept for a while, within a memory bound: the oldest go first when the bound
//! is reached, and stale ones are dropped when next asked for.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

#[derive(Debug)]
pub struct ResponseCache {
    ttl: Duration,
    max_bytes: usize,
    bytes: usize,
    entries: HashMap<String, Entry>,
    /// Keys in insertion order, oldest first (a key re-inserted appears twice; the stale
    /// position is skipped when evicting).
    order: VecDeque<(String, Instant)>,
}

#[derive(Debug)]
struct Entry {
    body: Arc<Value>,
    size: usize,
    stored: Instant,
}

impl ResponseCache {
    /// A cache keeping answers for `ttl`, at most `max_bytes` of them (measured as the
    /// size of the JSON received). A zero `ttl` or bound keeps nothing.
    pub fn new(ttl: Duration, max_bytes: usize) -> Self {
        Self {
            ttl,
            max_bytes,
            bytes: 0,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&mut self, key: &str) -> Option<Arc<Value>> {
        let entry = self.entries.get(key)?;
        if entry.stored.elapsed() < self.ttl {
            return Some(Arc::clone(&entry.body));
        }
        self.remove(key);
        None
    }

    pub fn insert(&mut self, key: String, body: Arc<Value>, size: usize) {
        if self.ttl.is_zero() || size > self.max_bytes {
            return;
        }
        self.remove(&key);
        while self.bytes + size > self.max_bytes {
            let Some((oldest, stored)) = self.order.pop_front() else {
                break;
            };
            if self
                .entries
                .get(&oldest)
                .is_some_and(|e| e.stored == stored)
            {
                self.remove(&oldest);
            }
        }
        let stored = Instant::now();
        self.order.push_back((key.clone(), stored));
        self.bytes += size;
        self.entries.insert(key, Entry { body, size, stored });
        // Re-inserted keys leave stale positions behind; keep the queue from growing
        // without bound when the same few questions repeat.
        if self.order.len() > 2 * self.entries.len() + 16 {
            let entries = &self.entries;
            self.order
                .retain(|(key, stored)| entries.get(key).is_some_and(|e| e.stored == *stored));
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.bytes = 0;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The size of the answers held, in bytes of JSON received.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes -= entry.size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(n: u64) -> Arc<Value> {
        Arc::new(json!({ "n": n }))
    }

    #[test]
    fn answers_are_served_until_they_expire() {
        let mut cache = ResponseCache::new(Duration::from_millis(30), 1000);
        cache.insert("a".into(), body(1), 10);
        assert_eq!(cache.get("a").as_deref(), Some(&json!({"n": 1})));
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get("a").is_none());
        assert_eq!(cache.bytes(), 0);
        assert!(cache.is_empty());
    }

    #[test]
    fn the_oldest_answers_go_first_when_the_bound_is_reached() {
        let mut cache = ResponseCache::new(Duration::from_secs(60), 100);
        cache.insert("a".into(), body(1), 40);
        cache.insert("b".into(), body(2), 40);
        cache.insert("c".into(), body(3), 40);
        assert!(cache.get("a").is_none());
        assert!(cache.get("b").is_some());
        assert!(cache.get("c").is_some());
        assert_eq!(cache.bytes(), 80);
    }

    #[test]
    fn replacing_an_answer_counts_its_size_once() {
        let mut cache = ResponseCache::new(Duration::from_secs(60), 100);
        for n in 0..1000 {
            cache.insert("same".into(), body(n), 30);
        }
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.bytes(), 30);
        assert!(cache.order.len() <= 2 * cache.len() + 17);
        cache.insert("other".into(), body(1), 60);
        assert_eq!(cache.bytes(), 90);
        cache.insert("third".into(), body(1), 50);
        assert!(cache.bytes() <= 100);
        assert!(cache.get("third").is_some());
    }

    #[test]
    fn answers_larger_than_the_bound_or_a_zero_ttl_are_not_kept() {
        let mut cache = ResponseCache::new(Duration::from_secs(60), 100);
        cache.insert("big".into(), body(1), 101);
        assert!(cache.is_empty());
        let mut off = ResponseCache::new(Duration::ZERO, 100);
        off.insert("a".into(), body(1), 1);
        assert!(off.is_empty());
    }
}
