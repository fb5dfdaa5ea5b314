//! What differs between SQLite, PostgreSQL and MySQL/MariaDB.

use std::borrow::Cow;

/// A SQL engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite, the embedded default.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

impl Dialect {
    /// Rewrites `?` placeholders as `$1, $2, ...` for PostgreSQL; others take `?` as is.
    /// Statements here never contain a literal `?`.
    pub fn rebind<'q>(&self, q: &'q str) -> Cow<'q, str> {
        if *self != Dialect::Postgres || !q.contains('?') {
            return Cow::Borrowed(q);
        }
        let mut out = String::with_capacity(q.len() + 8);
        let mut n = 0;
        for c in q.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    }

    /// Row lock for read-merge-write transactions.
    pub fn for_update(&self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres | Dialect::Mysql => " FOR UPDATE",
        }
    }

    /// Expands the type placeholders of the DDL: `{key}` (IDs and short enums), `{name}` (names and
    /// paths, compared byte-wise on every engine so ordering and uniqueness agree), `{text}` (unbounded
    /// text), `{int}` and `{table}` (table options).
    pub fn ddl(&self, template: &str) -> String {
        let (key, name, text) = match self {
            Dialect::Sqlite => ("TEXT", "TEXT", "TEXT"),
            Dialect::Postgres => ("VARCHAR(64) COLLATE \"C\"", "VARCHAR(512) COLLATE \"C\"", "TEXT"),
            Dialect::Mysql => (
                "VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
                "VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
                "LONGTEXT",
            ),
        };
        let table = if *self == Dialect::Mysql { " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" } else { "" };
        template
            .replace("{key}", key)
            .replace("{name}", name)
            .replace("{text}", text)
            .replace("{int}", "BIGINT")
            .replace("{table}", table)
    }

    /// `INSERT ...` that does nothing when the key exists.
    pub fn insert_if_absent(&self, table: &str, columns: &[&str], key: &str) -> String {
        let cols = columns.join(", ");
        let marks = vec!["?"; columns.len()].join(", ");
        match self {
            Dialect::Mysql => format!("INSERT IGNORE INTO {table} ({cols}) VALUES ({marks})"),
            _ => format!("INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({key}) DO NOTHING"),
        }
    }

    /// `INSERT ... ` that, when the key exists, updates the listed columns except the key and
    /// `insert_only` ones.
    pub fn upsert(&self, table: &str, columns: &[&str], key: &str, insert_only: &[&str]) -> String {
        let cols = columns.join(", ");
        let marks = vec!["?"; columns.len()].join(", ");
        let updates: Vec<String> = columns
            .iter()
            .filter(|c| **c != key && !insert_only.contains(c))
            .map(|c| match self {
                Dialect::Mysql => format!("{c} = VALUES({c})"),
                _ => format!("{c} = excluded.{c}"),
            })
            .collect();
        match self {
            Dialect::Mysql => {
                format!("INSERT INTO {table} ({cols}) VALUES ({marks}) ON DUPLICATE KEY UPDATE {}", updates.join(", "))
            }
            _ => format!(
                "INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({key}) DO UPDATE SET {}",
                updates.join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebind_only_for_postgres() {
        assert_eq!(Dialect::Postgres.rebind("a = ? AND b = ?"), "a = $1 AND b = $2");
        assert_eq!(Dialect::Mysql.rebind("a = ?"), "a = ?");
        assert!(Dialect::Sqlite.upsert("t", &["id", "v"], "id", &[]).contains("excluded.v"));
        assert!(Dialect::Mysql.upsert("t", &["id", "v"], "id", &[]).contains("VALUES(v)"));
        assert!(!Dialect::Postgres.upsert("t", &["id", "v", "w"], "id", &["w"]).contains("w = "));
    }
}
