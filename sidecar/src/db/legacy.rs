//! Databases migrated by releases whose migrations still held the functions.
//!
//! Up to commit 7d217e0, migrations 0002-0009 created functions, triggers and views themselves.
//! Those now live in sql/api, and the migrations keep only tables, indexes, types, policies and
//! grants, so their text (and sqlx's checksum of it) changed. A database migrated by such a
//! release holds exactly what the old files made; applying sql/api over it gives the same catalog
//! as a fresh install (the upgrade test in scripts/test.sh compares them). So an applied
//! migration whose recorded checksum is the old file's is re-recorded under the current file's
//! checksum. Any other mismatch is still refused by the migrator.

use sqlx::migrate::Migrator;

/// (version, SHA-384 of the file as released up to 7d217e0), for the files that changed since.
const RELEASED_CHECKSUMS: &[(i64, &str)] = &[
    (
        2,
        "9ccd894fbabc1c577fbbf54d58c204d6cf03f2a43f72099736fa288f908bad07758f277ccb394b7b1f1df73e088d753d",
    ),
    (
        3,
        "45bb3cbf60a875451ef5dc00077ce22fa1045ee3072e8726117caa91d77cc3dfdf07fcb0dcd475c3750aef1a3fa72b12",
    ),
    (
        4,
        "f98d746ca9cfef341c08095fd508ed92ec811b3b5a63ef40472382b1a52ac81e44b6cdaa3ba1d663f19f6f240dc1859d",
    ),
    (
        5,
        "7a53d8223a30eeccbf8eff09a54abb37778ce6c25d70fe87a8895d17274f48f450b59f8c4b0b5f0559ac75ccacd556a4",
    ),
    (
        6,
        "2e9f5c7e62026f7d81c270a3ab289d4dbe0ca9db73bcc7dc649558ac636f587cc0707e66938157862a762bcc85c0bc8f",
    ),
    (
        7,
        "5f88cf6d8f377a729bbd0927ecb5b7d20753b82c27ce2e59a4343658f8757625af2b7d0cb5679e57c34a397510b4901f",
    ),
    (
        8,
        "0d38c3dfceb866c35fe4535edb33edc093d2b2e0883343fa8c6fbf51fe9912836267228f282b9878a984561f9b609f06",
    ),
    (
        9,
        "4a76d40b27727afe539685289ae8053fed39c2c72d3eb83d69ec2a7070f21235f804c3e03e5b73347bc544726cbc5704",
    ),
];

pub async fn migrations_table_exists(conn: &mut sqlx::PgConnection) -> anyhow::Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// Re-records released checksums as this build's; returns the versions re-recorded.
pub async fn rebaseline(conn: &mut sqlx::PgConnection, migrator: &Migrator) -> anyhow::Result<Vec<i64>> {
    if !migrations_table_exists(conn).await? {
        return Ok(Vec::new());
    }
    let mut changed = Vec::new();
    for &(version, released) in RELEASED_CHECKSUMS {
        let Some(current) = migrator.iter().find(|m| m.version == version) else {
            continue;
        };
        let done = sqlx::query(
            "UPDATE public._sqlx_migrations SET checksum = $1
             WHERE version = $2 AND checksum = decode($3, 'hex')",
        )
        .bind(current.checksum.as_ref())
        .bind(version)
        .bind(released)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() > 0 {
            changed.push(version);
        }
    }
    if !changed.is_empty() {
        tracing::info!(versions = ?changed, "migrations of an earlier release re-recorded (their functions now live in sql/api)");
    }
    Ok(changed)
}
