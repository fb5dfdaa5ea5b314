//! The queue on Redis (`redis://host:port[/db]`).
//!
//! One sorted set per priority (`fn:q:vis:{p}`), scored by the time a message may next be reserved, and
//! one hash per message (`fn:q:msg:{id}`: payload, priority, token, attempts). Every operation is a Lua
//! script, so it is atomic: two consumers can never reserve the same message, and a stale holder's ack is
//! refused. Within a priority, messages come out in visibility order (push time plus delay), ties by ID.
//! Durability is Redis's: run it with AOF (`appendonly yes`) for a queue that survives a Redis restart.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::{new_token, now_ms, presented, Message, MessageQueue, QueueError, QueueResult, Reservation};

const PREFIX: &str = "fn:q:";

const PUSH: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'priority', ARGV[2], 'payload', ARGV[4], 'token', '', 'attempts', 0)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"#;

const RESERVE: &str = r#"
for i = 1, 3 do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', ARGV[1], 'LIMIT', 0, 1)
  if #ids > 0 then
    local id = ids[1]
    local mk = ARGV[4] .. 'msg:' .. id
    redis.call('ZADD', KEYS[i], ARGV[2], id)
    redis.call('HSET', mk, 'token', ARGV[3])
    local attempts = redis.call('HINCRBY', mk, 'attempts', 1)
    return {id, redis.call('HGET', mk, 'priority'), attempts, redis.call('HGET', mk, 'payload')}
  end
end
return false
"#;

const ACK: &str = r#"
local mk = ARGV[3] .. 'msg:' .. ARGV[1]
if redis.call('HGET', mk, 'token') ~= ARGV[2] then return 0 end
redis.call('ZREM', ARGV[3] .. 'vis:' .. redis.call('HGET', mk, 'priority'), ARGV[1])
redis.call('DEL', mk)
return 1
"#;

const RELEASE: &str = r#"
local mk = ARGV[3] .. 'msg:' .. ARGV[1]
if redis.call('HGET', mk, 'token') ~= ARGV[2] then return 0 end
redis.call('ZADD', ARGV[3] .. 'vis:' .. redis.call('HGET', mk, 'priority'), ARGV[4], ARGV[1])
redis.call('HSET', mk, 'token', '')
return 1
"#;

const EXTEND: &str = r#"
local mk = ARGV[3] .. 'msg:' .. ARGV[1]
if redis.call('HGET', mk, 'token') ~= ARGV[2] then return 0 end
redis.call('ZADD', ARGV[3] .. 'vis:' .. redis.call('HGET', mk, 'priority'), ARGV[4], ARGV[1])
return 1
"#;

/// A queue on a Redis server.
#[derive(Clone)]
pub struct RedisQueue {
    conn: ConnectionManager,
    prefix: String,
}

impl From<redis::RedisError> for QueueError {
    fn from(e: redis::RedisError) -> Self {
        if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() || e.is_timeout() {
            QueueError::Unavailable(e.to_string())
        } else {
            QueueError::Backend(e.to_string())
        }
    }
}

impl RedisQueue {
    /// Connects to `url`, retrying an unreachable server `retries` times one second apart. The connection
    /// reconnects by itself afterwards.
    pub async fn connect(url: &str, retries: u32) -> QueueResult<RedisQueue> {
        Self::connect_with_prefix(url, retries, PREFIX).await
    }

    /// As [`RedisQueue::connect`], with keys under `prefix` (tests use one per test to share a server).
    pub async fn connect_with_prefix(url: &str, retries: u32, prefix: &str) -> QueueResult<RedisQueue> {
        let client = redis::Client::open(url).map_err(|e| QueueError::Config(format!("FN_MQ_URL: {e}")))?;
        let mut attempt = 0;
        loop {
            let config = ConnectionManagerConfig::new()
                .set_number_of_retries(2)
                .set_max_delay(1000)
                .set_connection_timeout(Duration::from_secs(2))
                .set_response_timeout(Duration::from_secs(5));
            match ConnectionManager::new_with_config(client.clone(), config).await {
                Ok(conn) => return Ok(RedisQueue { conn, prefix: prefix.to_string() }),
                Err(e) if attempt < retries => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "redis queue not reachable, retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Runs a script that moves a held message's visibility to `after` from now.
    async fn held(&self, script: &str, r: &Reservation, after: Duration) -> QueueResult<()> {
        let done: i64 = Script::new(script)
            .arg(&r.message.id)
            .arg(presented(r)?)
            .arg(&self.prefix)
            .arg(now_ms() + after.as_millis() as i64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        if done == 0 {
            return Err(QueueError::NotReserved(r.message.id.clone()));
        }
        Ok(())
    }

    fn vis_key(&self, priority: u8) -> String {
        format!("{}vis:{}", self.prefix, priority.min(2))
    }
}

#[async_trait]
impl MessageQueue for RedisQueue {
    async fn push(&self, msg: &Message, delay: Duration) -> QueueResult<()> {
        let _: i64 = Script::new(PUSH)
            .key(format!("{}msg:{}", self.prefix, msg.id))
            .key(self.vis_key(msg.priority))
            .arg(&msg.id)
            .arg(msg.priority.min(2))
            .arg(now_ms() + delay.as_millis() as i64)
            .arg(&msg.payload)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn reserve(&self, lease: Duration) -> QueueResult<Option<Reservation>> {
        let now = now_ms();
        let token = new_token();
        let got: Option<(String, String, i64, String)> = Script::new(RESERVE)
            .key(self.vis_key(2))
            .key(self.vis_key(1))
            .key(self.vis_key(0))
            .arg(now)
            .arg(now + lease.as_millis() as i64)
            .arg(&token)
            .arg(&self.prefix)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(got.map(|(id, priority, attempts, payload)| Reservation {
            message: Message { id, priority: priority.parse().unwrap_or(0), payload },
            token,
            attempt: attempts as u32,
        }))
    }

    async fn ack(&self, r: &Reservation) -> QueueResult<()> {
        let done: i64 = Script::new(ACK)
            .arg(&r.message.id)
            .arg(presented(r)?)
            .arg(&self.prefix)
            .invoke_async(&mut self.conn.clone())
            .await?;
        if done == 0 {
            return Err(QueueError::NotReserved(r.message.id.clone()));
        }
        Ok(())
    }

    async fn extend(&self, r: &Reservation, lease: Duration) -> QueueResult<()> {
        self.held(EXTEND, r, lease).await
    }

    async fn release(&self, r: &Reservation, delay: Duration) -> QueueResult<()> {
        self.held(RELEASE, r, delay).await
    }

    async fn ping(&self) -> QueueResult<()> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn.clone()).await?;
        Ok(())
    }
}
