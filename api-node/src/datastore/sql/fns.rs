//! Fns on SQL.

use async_trait::async_trait;
use shared::{Error, Func, FuncInput};
use sqlx::Acquire;

use super::apps::decode_cursor;
use super::rows::{self, to_json, FN_COLUMNS};
use super::SqlStore;
use crate::datastore::{FnFilter, FnStore, Page, StoreResult};

#[async_trait]
impl FnStore for SqlStore {
    async fn insert_fn(&self, f: &Func) -> StoreResult<Func> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let check = self.sql(&format!("SELECT id FROM apps WHERE id = ?{}", self.for_update())).into_owned();
        if sqlx::query(&check).bind(&f.app_id).fetch_optional(&mut *tx).await?.is_none() {
            return Err(Error::AppNotFound.into());
        }
        let sql = self
            .sql(&format!("INSERT INTO fns ({FN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))
            .into_owned();
        let result = sqlx::query(&sql)
            .bind(&f.id)
            .bind(&f.name)
            .bind(&f.app_id)
            .bind(&f.image)
            .bind(f.format.as_str())
            .bind(f.memory as i64)
            .bind(f.timeout as i64)
            .bind(f.idle_timeout as i64)
            .bind(to_json(&f.config))
            .bind(to_json(&f.annotations))
            .bind(f.created_at.to_string())
            .bind(f.updated_at.to_string())
            .execute(&mut *tx)
            .await;
        match result {
            Ok(_) => {}
            Err(e) if rows::unique_violation(&e).is_some() => return Err(Error::FnAlreadyExists.into()),
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(f.clone())
    }

    async fn get_fn(&self, id: &str) -> StoreResult<Func> {
        let sql = self.sql(&format!("SELECT {FN_COLUMNS} FROM fns WHERE id = ?")).into_owned();
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::func).transpose()?.ok_or_else(|| Error::FnNotFound.into())
    }

    async fn update_fn(&self, id: &str, patch: FuncInput) -> StoreResult<Func> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let select = self.sql(&format!("SELECT {FN_COLUMNS} FROM fns WHERE id = ?{}", self.for_update())).into_owned();
        let row = sqlx::query(&select).bind(id).fetch_optional(&mut *tx).await?;
        let current = row.as_ref().map(rows::func).transpose()?.ok_or(Error::FnNotFound)?;
        let next = current.apply(patch)?;
        if next != current {
            let update = self.sql(
                "UPDATE fns SET image = ?, format = ?, memory = ?, timeout = ?, idle_timeout = ?, config = ?, \
                 annotations = ?, updated_at = ? WHERE id = ?",
            );
            sqlx::query(&update)
                .bind(&next.image)
                .bind(next.format.as_str())
                .bind(next.memory as i64)
                .bind(next.timeout as i64)
                .bind(next.idle_timeout as i64)
                .bind(to_json(&next.config))
                .bind(to_json(&next.annotations))
                .bind(next.updated_at.to_string())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(next)
    }

    async fn remove_fn(&self, id: &str) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let triggers = self.sql("DELETE FROM triggers WHERE fn_id = ?");
        sqlx::query(&triggers).bind(id).execute(&mut *tx).await?;
        let sql = self.sql("DELETE FROM fns WHERE id = ?");
        if sqlx::query(&sql).bind(id).execute(&mut *tx).await?.rows_affected() == 0 {
            return Err(Error::FnNotFound.into());
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_fns(&self, filter: &FnFilter) -> StoreResult<Page<Func>> {
        let after = filter.cursor.as_deref().map(decode_cursor).transpose()?;
        let mut sql = format!("SELECT {FN_COLUMNS} FROM fns WHERE app_id = ?");
        if filter.name.is_some() {
            sql.push_str(" AND name = ?");
        }
        if after.is_some() {
            sql.push_str(" AND name > ?");
        }
        sql.push_str(&format!(" ORDER BY name ASC LIMIT {}", filter.per_page + 1));
        let sql = self.sql(&sql).into_owned();
        let mut q = sqlx::query(&sql).bind(filter.app_id.clone());
        if let Some(name) = &filter.name {
            q = q.bind(name.clone());
        }
        if let Some(after) = after {
            q = q.bind(after);
        }
        let items = q.fetch_all(&self.pool).await?.iter().map(rows::func).collect::<StoreResult<Vec<_>>>()?;
        Ok(rows::page(items, filter.per_page, |f| shared::cursor::encode(&f.name)))
    }
}
