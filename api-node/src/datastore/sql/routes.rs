//! Routes on SQL.

use async_trait::async_trait;
use shared::{Error, Route, RouteInput};
use sqlx::Acquire;

use super::apps::decode_cursor;
use super::rows::{self, to_json, ROUTE_COLUMNS};
use super::SqlStore;
use crate::datastore::{Page, RouteFilter, RouteStore, StoreResult};

#[async_trait]
impl RouteStore for SqlStore {
    async fn insert_route(&self, route: &Route) -> StoreResult<Route> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let check = self.sql(&format!("SELECT id FROM apps WHERE id = ?{}", self.for_update())).into_owned();
        if sqlx::query(&check).bind(&route.app_id).fetch_optional(&mut *tx).await?.is_none() {
            return Err(Error::AppNotFound.into());
        }
        let sql = self
            .sql(&format!("INSERT INTO routes ({ROUTE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))
            .into_owned();
        let result = sqlx::query(&sql)
            .bind(&route.app_id)
            .bind(&route.path)
            .bind(&route.image)
            .bind(route.format.as_str())
            .bind(route.memory as i64)
            .bind(route.cpus.0 as i64)
            .bind(route.timeout as i64)
            .bind(route.idle_timeout as i64)
            .bind(route.tmpfs_size as i64)
            .bind(route.route_type.as_str())
            .bind(to_json(&route.headers))
            .bind(to_json(&route.config))
            .bind(to_json(&route.annotations))
            .bind(route.created_at.to_string())
            .bind(route.updated_at.to_string())
            .execute(&mut *tx)
            .await;
        match result {
            Ok(_) => {}
            Err(e) if rows::unique_violation(&e).is_some() => return Err(Error::RouteAlreadyExists.into()),
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(route.clone())
    }

    async fn get_route(&self, app_id: &str, path: &str) -> StoreResult<Route> {
        let sql = self.sql(&format!("SELECT {ROUTE_COLUMNS} FROM routes WHERE app_id = ? AND path = ?")).into_owned();
        let row = sqlx::query(&sql).bind(app_id).bind(path).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::route).transpose()?.ok_or_else(|| Error::RouteNotFound.into())
    }

    async fn update_route(&self, app_id: &str, path: &str, patch: RouteInput) -> StoreResult<Route> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let select = self
            .sql(&format!("SELECT {ROUTE_COLUMNS} FROM routes WHERE app_id = ? AND path = ?{}", self.for_update()))
            .into_owned();
        let row = sqlx::query(&select).bind(app_id).bind(path).fetch_optional(&mut *tx).await?;
        let current = row.as_ref().map(rows::route).transpose()?.ok_or(Error::RouteNotFound)?;
        let next = current.apply(patch)?;
        if next != current {
            let update = self.sql(
                "UPDATE routes SET image = ?, format = ?, memory = ?, cpus = ?, timeout = ?, idle_timeout = ?, \
                 tmpfs_size = ?, type = ?, headers = ?, config = ?, annotations = ?, updated_at = ? \
                 WHERE app_id = ? AND path = ?",
            );
            sqlx::query(&update)
                .bind(&next.image)
                .bind(next.format.as_str())
                .bind(next.memory as i64)
                .bind(next.cpus.0 as i64)
                .bind(next.timeout as i64)
                .bind(next.idle_timeout as i64)
                .bind(next.tmpfs_size as i64)
                .bind(next.route_type.as_str())
                .bind(to_json(&next.headers))
                .bind(to_json(&next.config))
                .bind(to_json(&next.annotations))
                .bind(next.updated_at.to_string())
                .bind(app_id)
                .bind(path)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(next)
    }

    async fn remove_route(&self, app_id: &str, path: &str) -> StoreResult<()> {
        let sql = self.sql("DELETE FROM routes WHERE app_id = ? AND path = ?");
        let deleted = sqlx::query(&sql).bind(app_id).bind(path).execute(&self.pool).await?.rows_affected();
        if deleted == 0 {
            return Err(Error::RouteNotFound.into());
        }
        Ok(())
    }

    async fn list_routes(&self, filter: &RouteFilter) -> StoreResult<Page<Route>> {
        let after = filter.cursor.as_deref().map(decode_cursor).transpose()?;
        let mut sql = format!("SELECT {ROUTE_COLUMNS} FROM routes WHERE app_id = ?");
        if filter.image.is_some() {
            sql.push_str(" AND image = ?");
        }
        if after.is_some() {
            sql.push_str(" AND path > ?");
        }
        sql.push_str(&format!(" ORDER BY path ASC LIMIT {}", filter.per_page + 1));
        let sql = self.sql(&sql).into_owned();
        let mut q = sqlx::query(&sql).bind(filter.app_id.clone());
        if let Some(image) = &filter.image {
            q = q.bind(image.clone());
        }
        if let Some(after) = after {
            q = q.bind(after);
        }
        let items = q.fetch_all(&self.pool).await?.iter().map(rows::route).collect::<StoreResult<Vec<_>>>()?;
        Ok(rows::page(items, filter.per_page, |r| shared::cursor::encode(&r.path)))
    }
}
