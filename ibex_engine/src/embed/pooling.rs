//! Mean pooling and normalisation: the part of sentence-transformers that is not in the ONNX
//! graph. Pure arithmetic, tested without a model.

/// Mean of each row's token vectors over its attention mask, scaled to unit L2 norm.
/// `hidden` is row-major `[rows, cols, dim]`; `mask` is `[rows, cols]`.
pub fn mean_pool_normalised(hidden: &[f32], mask: &[i64], rows: usize, cols: usize, dim: usize) -> Vec<Vec<f32>> {
    debug_assert_eq!(hidden.len(), rows * cols * dim);
    debug_assert_eq!(mask.len(), rows * cols);
    (0..rows)
        .map(|row| {
            let mut sum = vec![0f32; dim];
            let mut count = 0f32;
            for col in 0..cols {
                if mask[row * cols + col] == 0 {
                    continue;
                }
                count += 1.0;
                let token = &hidden[(row * cols + col) * dim..(row * cols + col + 1) * dim];
                for (s, h) in sum.iter_mut().zip(token) {
                    *s += h;
                }
            }
            // sentence-transformers clamps the count at 1e-9; a row always has [CLS] and [SEP].
            let count = count.max(1e-9);
            sum.iter_mut().for_each(|s| *s /= count);
            normalise(&mut sum);
            sum
        })
        .collect()
}

/// Scales a vector to unit L2 norm (left as is when it is all zeros).
pub fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 1e-12 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Cosine similarity of two vectors of the same length.
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_only_unmasked_tokens() {
        // one row, three tokens of dim 2; the last token is padding and must not count.
        let hidden = [1.0, 0.0, 3.0, 0.0, 100.0, 100.0];
        let mask = [1, 1, 0];
        let out = mean_pool_normalised(&hidden, &mask, 1, 3, 2);
        assert_eq!(out, vec![vec![1.0, 0.0]]);
    }

    #[test]
    fn output_has_unit_norm() {
        let hidden = [3.0, 4.0, 3.0, 4.0];
        let out = mean_pool_normalised(&hidden, &[1, 1], 1, 2, 2);
        let norm: f32 = out[0].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6);
        assert!((out[0][0] - 0.6).abs() < 1e-6);
    }

    #[test]
    fn rows_are_independent() {
        let hidden = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0];
        let mask = [1, 0, 1, 1];
        let out = mean_pool_normalised(&hidden, &mask, 2, 2, 2);
        assert_eq!(out[0], vec![1.0, 0.0]);
        assert_eq!(out[1], vec![0.0, 1.0]);
    }

    #[test]
    fn cosine_of_orthogonal_and_equal() {
        assert_eq!(cosine_similarity(&[1.0, 0.0], &[0.0, 1.0]), 0.0);
        assert!((cosine_similarity(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-6);
        assert_eq!(cosine_similarity(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
