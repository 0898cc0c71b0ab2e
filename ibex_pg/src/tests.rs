//! `#[pg_test]`s: what needs a live backend (the SQL surface, settings, error reporting).
//! Pure logic is tested in ibex_engine; golden SQL output lives in pg_regress/.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn one<T: pgrx::FromDatum + pgrx::IntoDatum>(sql: &str) -> T {
        Spi::get_one::<T>(sql).expect("query runs").expect("not null")
    }

    #[pg_test]
    fn version_names_the_extension() {
        assert!(one::<String>("SELECT ibex_version()").starts_with("ibex_pg "));
    }

    #[pg_test]
    fn settings_are_registered() {
        let names = one::<i64>("SELECT count(*) FROM pg_settings WHERE name IN ('ibex.model_dir', 'ibex.ort_library_path', 'ibex.inference_threads', 'ibex.recency_half_life_hours', 'ibex.org_id')");
        assert_eq!(names, 5);
        assert_eq!(one::<String>("SHOW ibex.inference_threads"), "1");
        assert_eq!(one::<String>("SHOW ibex.recency_half_life_hours"), "168");
    }

    #[pg_test]
    fn embedding_has_384_dimensions_and_unit_norm() {
        assert_eq!(one::<i32>("SELECT vector_dims(ibex_embed('hello world'))"), 384);
        let norm = one::<f64>("SELECT vector_norm(ibex_embed('hello world'))");
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }

    #[pg_test]
    fn cat_on_mat_is_closer_than_stock_market() {
        let near =
            one::<f64>("SELECT ibex_embed('The cat sits on the mat') <=> ibex_embed('A cat is sitting on a mat')");
        let far = one::<f64>(
            "SELECT ibex_embed('The cat sits on the mat') <=> ibex_embed('Stock markets fell sharply today')",
        );
        assert!(near < far, "distance {near} should be below {far}");
    }

    #[pg_test]
    fn batch_matches_single_and_keeps_nulls() {
        let same =
            one::<f64>("SELECT (ibex_embed_batch(ARRAY['alpha beta', NULL, 'gamma']))[1] <=> ibex_embed('alpha beta')");
        assert!(same < 1e-4, "{same}");
        assert!(one::<bool>(
            "SELECT (ibex_embed_batch(ARRAY['a', NULL, 'b']))[2] IS NULL"
        ));
        assert_eq!(
            one::<i32>("SELECT cardinality(ibex_embed_batch(ARRAY['a', NULL, 'b']))"),
            3
        );
    }

    #[pg_test]
    fn null_in_null_out() {
        assert!(one::<bool>("SELECT ibex_embed(NULL) IS NULL AND ibex_redact_pii(NULL) IS NULL AND ibex_token_count(NULL, 'gpt-4o') IS NULL"));
    }

    #[pg_test]
    fn long_text_is_truncated() {
        assert_eq!(
            one::<i32>("SELECT vector_dims(ibex_embed(repeat('memory ', 15000)))"),
            384
        );
    }

    #[pg_test(error = "cannot embed an empty text")]
    fn empty_text_is_an_error() {
        Spi::run("SELECT ibex_embed('')").unwrap();
    }

    #[pg_test(error = "too many texts in one embedding batch")]
    fn batch_of_513_is_an_error() {
        Spi::run("SELECT ibex_embed_batch(array_fill('x'::text, ARRAY[513]))").unwrap();
    }

    #[pg_test]
    fn batch_of_512_works() {
        assert_eq!(
            one::<i32>("SELECT cardinality(ibex_embed_batch(array_fill('x'::text, ARRAY[512])))"),
            512
        );
    }

    #[pg_test]
    fn wrong_model_dir_is_a_clear_error_and_recoverable() {
        Spi::run("SET ibex.model_dir = '/nonexistent'").unwrap();
        let err = std::panic::catch_unwind(|| Spi::run("SELECT ibex_embed('x')"));
        assert!(err.is_err(), "embedding with a missing model must fail");
        Spi::run("RESET ibex.model_dir").unwrap();
        assert_eq!(one::<i32>("SELECT vector_dims(ibex_embed('x'))"), 384);
    }

    #[pg_test]
    fn pii_is_redacted_and_detected() {
        assert_eq!(
            one::<String>("SELECT ibex_redact_pii('My email is jane.doe@example.com and my phone is 555-123-4567, SSN 123-45-6789')"),
            "My email is [EMAIL] and my phone is [PHONE], SSN [SSN]"
        );
        assert_eq!(
            one::<String>("SELECT ibex_redact_pii('Meeting on 2024-01-15 costs $1,234.56, version 2.14.3')"),
            "Meeting on 2024-01-15 costs $1,234.56, version 2.14.3"
        );
        let kinds = one::<String>(
            "SELECT string_agg(e->>'type', ',' ORDER BY (e->>'start')::int) FROM jsonb_array_elements(ibex_detect_pii('ip 10.0.0.1 card 4111 1111 1111 1111')) e",
        );
        assert_eq!(kinds, "IP_ADDRESS,CREDIT_CARD");
    }

    #[pg_test]
    fn composite_score_worked_example() {
        // relevance 0.8, confidence 0.9, 3 useful / 1 not, 9 accesses, touched 168 h ago:
        // 0.32 + 0.125 + 0.1333333 + 0.09 + 0.0249461 = 0.6932794
        let s =
            one::<f64>("SELECT ibex_composite_score(0.8, 0.9, 3, 1, 9, '2025-01-01 00:00+00', '2025-01-08 00:00+00')");
        assert!((s - 0.6932794).abs() < 1e-6, "{s}");
        let hot = one::<f64>("SELECT ibex_hot_score(0.9, 3, 1, 9, '2025-01-01 00:00+00', '2025-01-08 00:00+00')");
        assert!((hot - (0.6932794 - 0.32)).abs() < 1e-6, "{hot}");
        let recency = one::<f64>(
            "SELECT recency FROM ibex_score_components(0.8, 0.9, 3, 1, 9, '2025-01-01 00:00+00', '2025-01-08 00:00+00')",
        );
        assert!((recency - 0.5).abs() < 1e-9);
    }

    #[pg_test]
    fn half_life_setting_changes_recency() {
        Spi::run("SET ibex.recency_half_life_hours = 24").unwrap();
        let recency = one::<f64>(
            "SELECT recency FROM ibex_score_components(0, 0, 0, 0, 0, '2025-01-01 00:00+00', '2025-01-03 00:00+00')",
        );
        assert!((recency - 0.25).abs() < 1e-9, "{recency}");
    }

    #[pg_test]
    fn knapsack_worked_example() {
        // budget 100: 0.9/60 fits, 0.8/50 not, 0.7/30 fits, 0.6/20 not, 0.5/10 fits.
        let chosen =
            one::<Vec<i32>>("SELECT ibex_knapsack(ARRAY[0.8, 0.9, 0.6, 0.7, 0.5], ARRAY[50, 60, 20, 30, 10], 100)");
        assert_eq!(chosen, vec![2, 4, 5]);
    }

    #[pg_test(error = "scores and tokens must have the same length")]
    fn knapsack_rejects_mismatched_arrays() {
        Spi::run("SELECT ibex_knapsack(ARRAY[0.5], ARRAY[1, 2], 10)").unwrap();
    }

    #[pg_test]
    fn token_counts_and_windows() {
        assert_eq!(one::<i32>("SELECT ibex_token_count('hello world', 'gpt-4o')"), 2);
        assert_eq!(one::<i32>("SELECT ibex_model_context_window('gpt-4o-mini')"), 128000);
        assert!(one::<bool>("SELECT ibex_model_context_window('no-such-model') IS NULL"));
    }

    #[pg_test]
    fn relevance_blend_follows_the_setting() {
        let r = one::<f64>("SELECT ibex_relevance(0.8, 0.2)");
        let w = ibex_engine::relevance::DEFAULT_LEXICAL_WEIGHT;
        assert!((r - ((1.0 - w) * 0.8 + w * 0.2)).abs() < 1e-9, "{r}");
        Spi::run("SET ibex.lexical_weight = 1").unwrap();
        assert!((one::<f64>("SELECT ibex_relevance(0.8, 0.2)") - 0.2).abs() < 1e-9);
    }

    #[pg_test]
    fn workers_are_registered_when_preloaded() {
        // The test cluster preloads ibex_pg (postgresql_conf_options), so the workers run.
        let n = one::<i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('ibex indexer', 'ibex extraction')",
        );
        assert!(n >= 2, "{n} IBEX background workers");
    }

    #[pg_test]
    fn waking_the_extraction_workers_is_harmless_outside_sessions() {
        Spi::run("SELECT ibex_wake_extraction_workers(); SELECT ibex_wake_extraction_workers();").unwrap();
    }
}
