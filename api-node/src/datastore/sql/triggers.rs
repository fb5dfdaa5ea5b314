//! Triggers on SQL.

use async_trait::async_trait;
use shared::{Error, Trigger, TriggerInput};
use sqlx::{Acquire, AnyConnection};

use super::apps::decode_cursor;
use super::rows::{self, to_json, TRIGGER_COLUMNS};
use super::SqlStore;
use crate::datastore::{Page, StoreResult, TriggerFilter, TriggerStore};

/// Which unique constraint a failed trigger write broke.
fn conflict(message: &str) -> Error {
    if message.contains("uq_triggers_source") || message.contains("triggers.source") {
        Error::TriggerSourceExists
    } else {
        Error::TriggerAlreadyExists
    }
}

impl SqlStore {
    /// Checks, inside the write's transaction, that the fn exists and belongs to the app.
    async fn check_fn_of_app(&self, conn: &mut AnyConnection, app_id: &str, fn_id: &str) -> StoreResult<()> {
        let sql = self.sql(&format!("SELECT app_id FROM fns WHERE id = ?{}", self.for_update())).into_owned();
        let row = sqlx::query(&sql).bind(fn_id).fetch_optional(&mut *conn).await?;
        let owner = rows::text(&row.ok_or(Error::FnNotFound)?, "app_id")?;
        if owner != app_id {
            return Err(Error::TriggerFnNotInApp.into());
        }
        Ok(())
    }
}

#[async_trait]
impl TriggerStore for SqlStore {
    async fn insert_trigger(&self, t: &Trigger) -> StoreResult<Trigger> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let app = self.sql(&format!("SELECT id FROM apps WHERE id = ?{}", self.for_update())).into_owned();
        if sqlx::query(&app).bind(&t.app_id).fetch_optional(&mut *tx).await?.is_none() {
            return Err(Error::AppNotFound.into());
        }
        self.check_fn_of_app(&mut tx, &t.app_id, &t.fn_id).await?;
        let sql = self
            .sql(&format!("INSERT INTO triggers ({TRIGGER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"))
            .into_owned();
        let result = sqlx::query(&sql)
            .bind(&t.id)
            .bind(&t.name)
            .bind(&t.app_id)
            .bind(&t.fn_id)
            .bind(t.trigger_type.as_str())
            .bind(&t.source)
            .bind(to_json(&t.annotations))
            .bind(t.created_at.to_string())
            .bind(t.updated_at.to_string())
            .execute(&mut *tx)
            .await;
        if let Err(e) = result {
            return Err(match rows::unique_violation(&e) {
                Some(message) => conflict(&message).into(),
                None => e.into(),
            });
        }
        tx.commit().await?;
        Ok(t.clone())
    }

    async fn get_trigger(&self, id: &str) -> StoreResult<Trigger> {
        let sql = self.sql(&format!("SELECT {TRIGGER_COLUMNS} FROM triggers WHERE id = ?")).into_owned();
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::trigger).transpose()?.ok_or_else(|| Error::TriggerNotFound.into())
    }

    async fn get_trigger_by_source(&self, app_id: &str, trigger_type: &str, source: &str) -> StoreResult<Trigger> {
        let sql = self
            .sql(&format!("SELECT {TRIGGER_COLUMNS} FROM triggers WHERE app_id = ? AND type = ? AND source = ?"))
            .into_owned();
        let row = sqlx::query(&sql).bind(app_id).bind(trigger_type).bind(source).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::trigger).transpose()?.ok_or_else(|| Error::TriggerNotFound.into())
    }

    async fn update_trigger(&self, id: &str, patch: TriggerInput) -> StoreResult<Trigger> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let select =
            self.sql(&format!("SELECT {TRIGGER_COLUMNS} FROM triggers WHERE id = ?{}", self.for_update())).into_owned();
        let row = sqlx::query(&select).bind(id).fetch_optional(&mut *tx).await?;
        let current = row.as_ref().map(rows::trigger).transpose()?.ok_or(Error::TriggerNotFound)?;
        let next = current.apply(patch)?;
        if next != current {
            if next.fn_id != current.fn_id {
                self.check_fn_of_app(&mut tx, &next.app_id, &next.fn_id).await?;
            }
            let update = self.sql(
                "UPDATE triggers SET name = ?, fn_id = ?, source = ?, annotations = ?, updated_at = ? WHERE id = ?",
            );
            let result = sqlx::query(&update)
                .bind(&next.name)
                .bind(&next.fn_id)
                .bind(&next.source)
                .bind(to_json(&next.annotations))
                .bind(next.updated_at.to_string())
                .bind(id)
                .execute(&mut *tx)
                .await;
            if let Err(e) = result {
                return Err(match rows::unique_violation(&e) {
                    Some(message) => conflict(&message).into(),
                    None => e.into(),
                });
            }
        }
        tx.commit().await?;
        Ok(next)
    }

    async fn remove_trigger(&self, id: &str) -> StoreResult<()> {
        let sql = self.sql("DELETE FROM triggers WHERE id = ?");
        if sqlx::query(&sql).bind(id).execute(&self.pool).await?.rows_affected() == 0 {
            return Err(Error::TriggerNotFound.into());
        }
        Ok(())
    }

    /// Ordered by name, then ID (names repeat across fns), with a cursor over both. Fn's server ordered by
    /// name but paged by ID, which skipped and repeated triggers; this keeps order and cursor consistent.
    async fn list_triggers(&self, filter: &TriggerFilter) -> StoreResult<Page<Trigger>> {
        let after = filter.cursor.as_deref().map(decode_cursor).transpose()?;
        let after = match after {
            Some(key) => Some(
                key.split_once('\n')
                    .map(|(n, i)| (n.to_string(), i.to_string()))
                    .ok_or_else(|| Error::BadRequest("invalid cursor".into()))?,
            ),
            None => None,
        };
        let mut sql = format!("SELECT {TRIGGER_COLUMNS} FROM triggers WHERE app_id = ?");
        if filter.fn_id.is_some() {
            sql.push_str(" AND fn_id = ?");
        }
        if filter.name.is_some() {
            sql.push_str(" AND name = ?");
        }
        if after.is_some() {
            sql.push_str(" AND (name > ? OR (name = ? AND id > ?))");
        }
        sql.push_str(&format!(" ORDER BY name ASC, id ASC LIMIT {}", filter.per_page + 1));
        let sql = self.sql(&sql).into_owned();
        let mut q = sqlx::query(&sql).bind(filter.app_id.clone());
        if let Some(fn_id) = &filter.fn_id {
            q = q.bind(fn_id.clone());
        }
        if let Some(name) = &filter.name {
            q = q.bind(name.clone());
        }
        if let Some((name, id)) = after {
            q = q.bind(name.clone()).bind(name).bind(id);
        }
        let items = q.fetch_all(&self.pool).await?.iter().map(rows::trigger).collect::<StoreResult<Vec<_>>>()?;
        Ok(rows::page(items, filter.per_page, |t| shared::cursor::encode(&format!("{}\n{}", t.name, t.id))))
    }
}
