//! One readable form of the schema: `schema/current.sql`, rendered from a database the
//! migrations built (`schema/render.sql`: each function's current body, not the mental diff of
//! its redefinitions across migrations). Fails when a migration changes the schema and the file
//! was not regenerated: `HOOKLINE_UPDATE_SCHEMA=1 cargo nextest run -E 'test(schema::)'`.

use hookline_testkit::workspace_root;

#[tokio::test]
async fn the_readable_schema_is_what_the_migrations_build() {
    let (_pg, pool) = crate::support::migrated_db().await;
    let root = workspace_root().join("schema");
    let render = std::fs::read_to_string(root.join("render.sql")).unwrap();
    let body: String = sqlx::query_scalar(&render).fetch_one(&pool).await.unwrap();
    let rendered = format!(
        "-- The schema the migrations build, rendered by schema/render.sql: generated, do not edit.\n\
         -- Regenerate: HOOKLINE_UPDATE_SCHEMA=1 cargo nextest run -E 'test(schema::)'\n\n{body}\n"
    );
    let path = root.join("current.sql");
    if std::env::var_os("HOOKLINE_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let kept = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        kept == rendered,
        "schema/current.sql differs from what the migrations build; regenerate it with \
         HOOKLINE_UPDATE_SCHEMA=1 cargo nextest run -E 'test(schema::)' and review the diff"
    );
}
