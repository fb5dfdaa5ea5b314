//! An in-process queue, lost on exit: for tests only (`memory://`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{new_token, now_ms, presented, Message, MessageQueue, QueueError, QueueResult, Reservation};

#[derive(Debug)]
struct Entry {
    message: Message,
    visible_at: i64,
    token: String,
    attempts: u32,
}

/// The in-memory queue. Reserve scans all entries: fine for tests, not for production.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    entries: Mutex<HashMap<String, Entry>>,
}

#[async_trait]
impl MessageQueue for MemoryQueue {
    async fn push(&self, msg: &Message, delay: Duration) -> QueueResult<()> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.entry(msg.id.clone()).or_insert_with(|| Entry {
            message: msg.clone(),
            visible_at: now_ms() + delay.as_millis() as i64,
            token: String::new(),
            attempts: 0,
        });
        Ok(())
    }

    async fn reserve(&self, lease: Duration) -> QueueResult<Option<Reservation>> {
        let now = now_ms();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let next = entries
            .values_mut()
            .filter(|e| e.visible_at <= now)
            .min_by(|a, b| b.message.priority.cmp(&a.message.priority).then_with(|| a.message.id.cmp(&b.message.id)));
        Ok(next.map(|e| {
            e.token = new_token();
            e.attempts += 1;
            e.visible_at = now + lease.as_millis() as i64;
            Reservation { message: e.message.clone(), token: e.token.clone(), attempt: e.attempts }
        }))
    }

    async fn ack(&self, r: &Reservation) -> QueueResult<()> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(&r.message.id) {
            Some(e) if e.token == presented(r)? => {
                entries.remove(&r.message.id);
                Ok(())
            }
            _ => Err(QueueError::NotReserved(r.message.id.clone())),
        }
    }

    async fn extend(&self, r: &Reservation, lease: Duration) -> QueueResult<()> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get_mut(&r.message.id) {
            Some(e) if e.token == presented(r)? => {
                e.visible_at = now_ms() + lease.as_millis() as i64;
                Ok(())
            }
            _ => Err(QueueError::NotReserved(r.message.id.clone())),
        }
    }

    async fn release(&self, r: &Reservation, delay: Duration) -> QueueResult<()> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get_mut(&r.message.id) {
            Some(e) if e.token == presented(r)? => {
                e.token.clear();
                e.visible_at = now_ms() + delay.as_millis() as i64;
                Ok(())
            }
            _ => Err(QueueError::NotReserved(r.message.id.clone())),
        }
    }

    async fn ping(&self) -> QueueResult<()> {
        Ok(())
    }
}
