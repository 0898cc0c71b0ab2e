-- The SQL toolkit over ibex_engine: embeddings, PII, hashing, scoring, packing, token counts.
-- Embedding values are compared through rounded distances and booleans so the golden output
-- does not depend on the CPU's floating-point kernels.

SELECT vector_dims(ibex_embed('The cat sits on the mat')) AS dims,
       round(vector_norm(ibex_embed('The cat sits on the mat'))::numeric, 3) AS norm;

-- A cat-on-a-mat pair is closer than cat vs stock market.
SELECT (ibex_embed('The cat sits on the mat') <=> ibex_embed('A cat is sitting on a mat'))
     < (ibex_embed('The cat sits on the mat') <=> ibex_embed('Stock markets fell sharply today')) AS cat_pair_closer;

-- Batches: same vectors as single calls, NULL elements stay NULL, order kept.
SELECT i, v IS NULL AS is_null, round((v <=> ibex_embed(t))::numeric, 3) AS distance_to_single
FROM unnest(ARRAY['alpha', NULL, 'gamma ray burst'],
            ibex_embed_batch(ARRAY['alpha', NULL, 'gamma ray burst'])) WITH ORDINALITY AS u(t, v, i)
ORDER BY i;

-- NULL in, NULL out.
SELECT ibex_embed(NULL) IS NULL AS embed, ibex_embed_batch(NULL) IS NULL AS batch,
       ibex_redact_pii(NULL) IS NULL AS redact, ibex_detect_pii(NULL) IS NULL AS detect,
       ibex_token_count(NULL, 'gpt-4o') IS NULL AS tokens;

-- Bad input: clear errors with a hint, never a crashed backend.
SELECT ibex_embed('');
SELECT ibex_embed_batch(ARRAY['ok', '   ']);
SELECT cardinality(ibex_embed_batch(array_fill('x'::text, ARRAY[513])));
SELECT vector_dims(ibex_embed(repeat('a long text ', 9000))) AS dims_of_100kb_text;
SET ibex.model_dir = '/nonexistent/model';
SELECT ibex_embed('x');
RESET ibex.model_dir;
SELECT vector_dims(ibex_embed('works again after the fix')) AS dims;

-- PII: redaction with typed placeholders, and detection with character offsets.
SELECT ibex_redact_pii('My email is jane.doe@example.com and my phone is 555-123-4567');
SELECT ibex_redact_pii('Call +44 20 7946 0958 or (555) 123-4567; SSN 123-45-6789; card 4111 1111 1111 1111; from 192.168.1.20');
SELECT ibex_redact_pii('On 2024-01-15 order #123456789 cost $1,234.56; version 2.14.3; 42 apples') AS left_alone;
SELECT ibex_detect_pii('héllo jane@example.com, 555-123-4567');

-- Content hash: normalised (case, width, whitespace), SHA-256 hex.
SELECT ibex_content_hash('User likes  TEA') = ibex_content_hash('user likes tea') AS same_after_normalising,
       ibex_content_hash('abc') AS sha256_of_abc;

-- Composite score, worked by hand: relevance 0.8, confidence 0.9, 3 useful / 1 not useful,
-- 9 accesses, last touched one half-life (168 h) ago:
--   0.40*0.8 + 0.25*0.5 + 0.20*(4/6) + 0.10*0.9 + 0.05*ln(10)/ln(101) = 0.6932794
SELECT round(ibex_composite_score(0.8, 0.9, 3, 1, 9, '2025-01-01 00:00+00', '2025-01-08 00:00+00')::numeric, 7) AS score;
SELECT round(relevance::numeric, 4) AS relevance, round(recency::numeric, 4) AS recency,
       round(usefulness::numeric, 4) AS usefulness, round(confidence::numeric, 4) AS confidence,
       round(access_frequency::numeric, 4) AS access_frequency, round(total::numeric, 4) AS total
FROM ibex_score_components(0.8, 0.9, 3, 1, 9, '2025-01-01 00:00+00', '2025-01-08 00:00+00');
-- Without relevance (hot cache ranking): 0.6932794 - 0.32.
SELECT round(ibex_hot_score(0.9, 3, 1, 9, '2025-01-01 00:00+00', '2025-01-08 00:00+00')::numeric, 7) AS hot_score;
-- The half-life is a setting.
SET ibex.recency_half_life_hours = 24;
SELECT round(recency::numeric, 4) AS recency_two_half_lives
FROM ibex_score_components(0, 0, 0, 0, 0, '2025-01-01 00:00+00', '2025-01-03 00:00+00');
RESET ibex.recency_half_life_hours;

-- Greedy knapsack, worked by hand with budget 100:
--   #2 (0.9, 60 tok) fits -> 40 left; #1 (0.8, 50) does not; #4 (0.7, 30) fits -> 10 left;
--   #3 (0.6, 20) does not; #5 (0.5, 10) fits -> 0 left.
SELECT ibex_knapsack(ARRAY[0.8, 0.9, 0.6, 0.7, 0.5], ARRAY[50, 60, 20, 30, 10], 100) AS chosen;
-- Ties: fewer tokens first, then position.
SELECT ibex_knapsack(ARRAY[0.5, 0.5, 0.5], ARRAY[30, 10, 10], 25) AS chosen;
SELECT ibex_knapsack(ARRAY[0.5], ARRAY[1, 2], 10);
SELECT ibex_knapsack(ARRAY[0.5, NULL], ARRAY[1, 2], 10);
SELECT ibex_knapsack(ARRAY[0.5], ARRAY[-1], 10);

-- Token counts per model and context windows.
SELECT ibex_token_count('hello world', 'gpt-4o') AS gpt4o, ibex_token_count('hello world', 'gpt-4') AS gpt4,
       ibex_token_count('hello world', 'claude-3-5-sonnet') AS claude_approx;
SELECT model, context_window, max_output_tokens, tokenizer, exact_count FROM ibex_models()
WHERE model IN ('gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4', 'gemini-2.5-pro') ORDER BY model;
SELECT ibex_model_context_window('gpt-4o-2024-08-06') AS dated, ibex_model_context_window('unknown-model') AS unknown;

-- Volatility and parallel safety as declared.
SELECT proname, provolatile, proparallel, proisstrict FROM pg_proc
WHERE proname LIKE 'ibex\_%' AND pronamespace = 'public'::regnamespace ORDER BY proname;
