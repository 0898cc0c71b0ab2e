//! The embedder against the real model files (installed by `make setup`) and the fp32 reference
//! vectors of the original all-MiniLM-L6-v2 (tests/fixtures/minilm_reference.json).

use std::path::PathBuf;
use std::sync::OnceLock;

use ibex_engine::embed::{cosine_similarity, EmbedError, Embedder, EmbedderConfig, EMBEDDING_DIM, MAX_BATCH};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn config() -> EmbedderConfig {
    let model_dir = std::env::var("IBEX_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join(".ibex/vendor/model"));
    let lib = std::env::var("IBEX_ORT_LIB")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join(".ibex/vendor/onnxruntime/libonnxruntime.so.1.32.0"));
    assert!(
        model_dir.join("model.onnx").is_file(),
        "model files missing in {}: run `make setup`",
        model_dir.display()
    );
    EmbedderConfig::new(model_dir, lib)
}

fn embedder() -> &'static Embedder {
    static E: OnceLock<Embedder> = OnceLock::new();
    E.get_or_init(|| Embedder::load(&config()).expect("model loads"))
}

#[derive(serde::Deserialize)]
struct Reference {
    sentences: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(root().join("tests/fixtures/minilm_reference.json")).expect("fixture");
    serde_json::from_str(&text).expect("fixture parses")
}

fn nearest(vectors: &[Vec<f32>], i: usize) -> usize {
    (0..vectors.len())
        .filter(|&j| j != i)
        .max_by(|&a, &b| {
            cosine_similarity(&vectors[i], &vectors[a]).total_cmp(&cosine_similarity(&vectors[i], &vectors[b]))
        })
        .unwrap()
}

#[test]
fn matches_fp32_reference_and_its_neighbours() {
    let r = reference();
    assert_eq!(r.sentences.len(), 30);
    let ours = embedder().embed_batch(&r.sentences).unwrap();
    let mut worst = 1.0f32;
    for (i, (a, b)) in ours.iter().zip(&r.vectors).enumerate() {
        assert_eq!(a.len(), EMBEDDING_DIM);
        let cos = cosine_similarity(a, b);
        worst = worst.min(cos);
        assert!(cos >= 0.99, "sentence {i} {:?}: cosine {cos}", r.sentences[i]);
        assert_eq!(
            nearest(&ours, i),
            nearest(&r.vectors, i),
            "nearest neighbour of sentence {i}"
        );
    }
    eprintln!("worst cosine against fp32 reference: {worst:.4}");
}

#[test]
fn single_equals_batch_and_is_normalised() {
    let e = embedder();
    let texts = [
        "The cat sits on the mat",
        "a much longer sentence that pads the other one in this batch of two",
    ];
    let batch = e.embed_batch(&texts).unwrap();
    for (text, v) in texts.iter().zip(&batch) {
        let single = e.embed(text).unwrap();
        assert!(
            cosine_similarity(&single, v) > 0.9999,
            "padding changed the embedding of {text:?}"
        );
        let norm: f32 = single.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}

#[test]
fn semantic_order() {
    let e = embedder();
    let cat = e.embed("The cat sits on the mat").unwrap();
    let cat2 = e.embed("A cat is sitting on a mat").unwrap();
    let stocks = e.embed("Stock markets fell sharply today").unwrap();
    assert!(cosine_similarity(&cat, &cat2) > cosine_similarity(&cat, &stocks) + 0.3);
}

#[test]
fn long_text_is_truncated_not_rejected() {
    let e = embedder();
    let long = "memory ".repeat(20_000); // ~140 KB
    assert_eq!(e.token_count(&long).unwrap(), 256);
    assert_eq!(e.embed(&long).unwrap().len(), EMBEDDING_DIM);
}

#[test]
fn bad_inputs_are_errors() {
    let e = embedder();
    assert!(matches!(e.embed(""), Err(EmbedError::EmptyText { index: 0 })));
    assert!(matches!(
        e.embed_batch(&["ok", "  "]),
        Err(EmbedError::EmptyText { index: 1 })
    ));
    let too_many = vec!["x"; MAX_BATCH + 1];
    assert!(matches!(
        e.embed_batch(&too_many),
        Err(EmbedError::BatchTooLarge { len: 513, max: 512 })
    ));
    assert!(e.embed_batch::<&str>(&[]).unwrap().is_empty());
}

#[test]
fn missing_and_invalid_files_name_the_file_and_setting() {
    let _ = embedder(); // the runtime is loaded; these failures are about the model directory
    let cfg = config().with_setting_names("ibex.model_dir", "ibex.ort_library_path");
    let missing = EmbedderConfig {
        model_dir: "/nonexistent/model".into(),
        ..cfg.clone()
    };
    let err = Embedder::load(&missing).err().unwrap().to_string();
    assert!(
        err.contains("/nonexistent/model/model.onnx") && err.contains("ibex.model_dir"),
        "{err}"
    );

    let dir = std::env::temp_dir().join(format!("ibex-bad-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.onnx"), b"this is not an onnx file").unwrap();
    std::fs::copy(cfg.model_dir.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let bad = EmbedderConfig {
        model_dir: dir.clone(),
        ..cfg
    };
    let err = Embedder::load(&bad).err().unwrap().to_string();
    assert!(err.contains("model.onnx") && err.contains("ibex.model_dir"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
