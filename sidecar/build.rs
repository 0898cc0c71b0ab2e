// The migrations are embedded in the binary by `sqlx::migrate!`, and the files of sql/api (in the
// order sql/api/ORDER gives) by the table generated here; rebuild when either changes.
// The gRPC types of AssembleContext and the AuthService are generated from proto/ with protoc (PROTOC, or `protoc` on
// PATH; Debian's protobuf-compiler package).
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../sql/migrations");
    println!("cargo:rerun-if-changed=../sql/api");
    println!("cargo:rerun-if-changed=../proto");
    embed_sql_api(Path::new("../sql/api"))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(
            &[
                "../proto/ibex/context/v1/context.proto",
                "../proto/ibex/auth/v1/auth.proto",
            ],
            &["../proto"],
        )?;
    Ok(())
}

/// Writes `$OUT_DIR/sql_api.rs`: `SQL_API_FILES`, each file's name and text in apply order. A
/// file missing from ORDER (or listed but absent) fails the build, so none is silently skipped.
fn embed_sql_api(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let order = std::fs::read_to_string(dir.join("ORDER"))?;
    let listed: Vec<&str> = order
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut present: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.ends_with(".sql"))
        .collect();
    present.sort();
    for name in &present {
        if !listed.contains(&name.as_str()) {
            return Err(format!("sql/api/{name} is not listed in sql/api/ORDER").into());
        }
    }
    let mut table = String::from("pub static SQL_API_FILES: &[(&str, &str)] = &[\n");
    for name in &listed {
        let path = dir
            .join(name)
            .canonicalize()
            .map_err(|e| format!("sql/api/ORDER lists {name}: {e}"))?;
        println!("cargo:rerun-if-changed={}", path.display());
        table.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    table.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR")?).join("sql_api.rs");
    std::fs::write(out, table)?;
    Ok(())
}
