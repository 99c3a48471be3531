//! Figures of quality on labelled texts, shared by the quality tests and
//! `offpath bench quality`.

/// ROC-AUC of `scores` against `labels` (true: positive) by the rank-sum (Mann–Whitney)
/// formula, ties given their average rank: the chance that a positive scores above a
/// negative, ties counting half. Not a number when either class is empty.
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> f64 {
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return f64::NAN;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let j = (i..order.len())
            .take_while(|&j| scores[order[j]] == scores[order[i]])
            .count()
            + i;
        let average = (i + j + 1) as f64 / 2.0;
        order[i..j].iter().for_each(|&k| ranks[k] = average);
        i = j;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l)
        .map(|(r, _)| r)
        .sum();
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Perfect, reversed, tied and mixed orders give the textbook values; one class alone
    /// has none.
    #[test]
    fn roc_auc_counts_pairs_and_halves_ties() {
        assert_eq!(roc_auc(&[0.1, 0.9], &[false, true]), 1.0);
        assert_eq!(roc_auc(&[0.9, 0.1], &[false, true]), 0.0);
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), 0.5);
        // Positives 0.8, 0.4; negatives 0.6, 0.2: 3 of 4 pairs ordered.
        assert_eq!(
            roc_auc(&[0.8, 0.4, 0.6, 0.2], &[true, true, false, false]),
            0.75
        );
        assert!(roc_auc(&[0.5], &[true]).is_nan());
    }
}
