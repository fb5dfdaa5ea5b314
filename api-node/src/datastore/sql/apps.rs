//! Apps on SQL.

use async_trait::async_trait;
use shared::{App, AppInput, Error};
use sqlx::Acquire;

use super::rows::{self, to_json, APP_COLUMNS};
use super::SqlStore;
use crate::datastore::{AppFilter, AppStore, Page, StoreResult};

/// Tables holding an app's objects, deleted with it (children first).
const APP_CHILDREN: [&str; 5] = ["logs", "calls", "triggers", "fns", "routes"];

#[async_trait]
impl AppStore for SqlStore {
    async fn insert_app(&self, app: &App) -> StoreResult<App> {
        let sql = self.sql("INSERT INTO apps (id, name, config, annotations, syslog_url, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)");
        let result = sqlx::query(&sql)
            .bind(&app.id)
            .bind(&app.name)
            .bind(to_json(&app.config))
            .bind(to_json(&app.annotations))
            .bind(app.syslog_url.clone())
            .bind(app.created_at.to_string())
            .bind(app.updated_at.to_string())
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => Ok(app.clone()),
            Err(e) if rows::unique_violation(&e).is_some() => Err(Error::AppAlreadyExists.into()),
            Err(e) => Err(e.into()),
        }
    }

    async fn get_app_by_id(&self, id: &str) -> StoreResult<App> {
        let sql = self.sql(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = ?")).into_owned();
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::app).transpose()?.ok_or_else(|| Error::AppNotFound.into())
    }

    async fn get_app_by_name(&self, name: &str) -> StoreResult<App> {
        let sql = self.sql(&format!("SELECT {APP_COLUMNS} FROM apps WHERE name = ?")).into_owned();
        let row = sqlx::query(&sql).bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::app).transpose()?.ok_or_else(|| Error::AppNotFound.into())
    }

    async fn update_app(&self, id: &str, patch: AppInput) -> StoreResult<App> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let select =
            self.sql(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = ?{}", self.for_update())).into_owned();
        let row = sqlx::query(&select).bind(id).fetch_optional(&mut *tx).await?;
        let current = row.as_ref().map(rows::app).transpose()?.ok_or(Error::AppNotFound)?;
        let next = current.apply(patch)?;
        if next != current {
            let update =
                self.sql("UPDATE apps SET config = ?, annotations = ?, syslog_url = ?, updated_at = ? WHERE id = ?");
            sqlx::query(&update)
                .bind(to_json(&next.config))
                .bind(to_json(&next.annotations))
                .bind(next.syslog_url.clone())
                .bind(next.updated_at.to_string())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(next)
    }

    async fn remove_app(&self, id: &str) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        for table in APP_CHILDREN {
            let sql = self.sql(&format!("DELETE FROM {table} WHERE app_id = ?")).into_owned();
            sqlx::query(&sql).bind(id).execute(&mut *tx).await?;
        }
        let sql = self.sql("DELETE FROM apps WHERE id = ?");
        let deleted = sqlx::query(&sql).bind(id).execute(&mut *tx).await?.rows_affected();
        if deleted == 0 {
            return Err(Error::AppNotFound.into());
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_apps(&self, filter: &AppFilter) -> StoreResult<Page<App>> {
        let after = filter.cursor.as_deref().map(decode_cursor).transpose()?;
        let mut sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE 1 = 1");
        if filter.name.is_some() {
            sql.push_str(" AND name = ?");
        }
        if after.is_some() {
            sql.push_str(" AND name > ?");
        }
        sql.push_str(&format!(" ORDER BY name ASC LIMIT {}", filter.per_page + 1));
        let sql = self.sql(&sql).into_owned();
        let mut q = sqlx::query(&sql);
        if let Some(name) = &filter.name {
            q = q.bind(name.clone());
        }
        if let Some(after) = after {
            q = q.bind(after);
        }
        let items = q.fetch_all(&self.pool).await?.iter().map(rows::app).collect::<StoreResult<Vec<_>>>()?;
        Ok(rows::page(items, filter.per_page, |a| shared::cursor::encode(&a.name)))
    }
}

/// Decodes a cursor made by a list of this store; a foreign one is the caller's mistake (400).
pub(super) fn decode_cursor(cursor: &str) -> StoreResult<String> {
    shared::cursor::decode(cursor).ok_or_else(|| Error::BadRequest("invalid cursor".into()).into())
}
