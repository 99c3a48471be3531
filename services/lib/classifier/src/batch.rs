//! Grouping by length: every batch pads to its longest member, so batching messages of
//! similar length cuts wasted computation.

/// Splits item indices into batches of at most `max_batch` items and at most
/// `max_padded_tokens` padded tokens (longest × count), grouping similar lengths together.
/// Every index appears in exactly one batch; a single item longer than the budget gets a
/// batch of its own.
pub fn plan_batches(
    lengths: &[usize],
    max_batch: usize,
    max_padded_tokens: usize,
) -> Vec<Vec<usize>> {
    let max_batch = max_batch.max(1);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        // Sorted ascending, so the newest item is the longest of the batch.
        let padded = lengths[i] * (current.len() + 1);
        if !current.is_empty() && (current.len() == max_batch || padded > max_padded_tokens) {
            batches.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every index lands in exactly one batch, within the count bound, sorted by length.
    #[test]
    fn groups_by_length_within_bounds() {
        let lengths = [5, 40, 6, 38, 7, 41, 5, 39];
        let batches = plan_batches(&lengths, 4, 1000);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        assert!(batches.iter().all(|b| b.len() <= 4));
        assert_eq!(batches[0].iter().map(|&i| lengths[i]).max(), Some(7));
    }

    /// The padded-token budget closes a batch early; an oversized item still gets a batch.
    #[test]
    fn respects_token_budget() {
        let batches = plan_batches(&[10, 10, 10, 10, 300], 32, 35);
        assert_eq!(batches, vec![vec![0, 1, 2], vec![3], vec![4]]);
        assert!(plan_batches(&[], 8, 100).is_empty());
        assert_eq!(plan_batches(&[3, 3], 0, 100), vec![vec![0], vec![1]]);
    }
}
