//! Percentiles and ratios for the `name=value` figures of both benchmarks (`mux` and `proxy`).
//!
//! With nothing to compute from, they are errors that name what is missing: a 0 would read
//! like a measurement, so a run in which every move failed must not print
//! `transfer_p99_ms=0.00`.

/// The `p`-th percentile (0..=100) of `values`, nearest rank; an error naming `what` the values
/// are when there are none.
pub fn percentile(what: &str, values: &[f64], p: f64) -> Result<f64, String> {
    if values.is_empty() {
        return Err(format!("no {what}: no percentile to report"));
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    // `p * len / 100` rather than `p / 100 * len`: exact for whole percentiles, so p99 of 500
    // values is the 495th.
    let rank = (p * sorted.len() as f64 / 100.0).ceil() as usize;
    Ok(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// `numerator / divisor`, or an error naming the figure `what` unless both are finite and the
/// divisor is above 0.
pub fn ratio(what: &str, numerator: f64, divisor: f64) -> Result<f64, String> {
    if !(numerator.is_finite() && divisor.is_finite() && divisor > 0.0) {
        return Err(format!(
            "{what}: {numerator} / {divisor} is no ratio to report"
        ));
    }
    Ok(numerator / divisor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let values: Vec<f64> = (1..=500).rev().map(f64::from).collect();
        assert_eq!(percentile("v", &values, 50.0), Ok(250.0));
        assert_eq!(percentile("v", &values, 99.0), Ok(495.0));
        assert_eq!(percentile("v", &values, 100.0), Ok(500.0));
        assert_eq!(percentile("v", &values, 0.0), Ok(1.0));
        assert_eq!(percentile("v", &[7.0], 99.0), Ok(7.0));
    }

    #[test]
    fn no_samples_is_an_error() {
        let error = percentile("move latencies", &[], 99.0).unwrap_err();
        assert!(error.contains("no move latencies"), "{error}");
    }

    #[test]
    fn a_ratio_needs_a_positive_finite_divisor() {
        assert_eq!(ratio("r", 3.0, 2.0), Ok(1.5));
        assert_eq!(ratio("r", 0.0, 2.0), Ok(0.0));
        for divisor in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let error = ratio("tps_ratio", 1.0, divisor).unwrap_err();
            assert!(error.starts_with("tps_ratio: "), "{error}");
        }
        assert!(ratio("r", f64::NAN, 1.0).is_err());
    }
}
