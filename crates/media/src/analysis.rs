//! Pure helpers over what the pipeline measures: the loudest frequency in a spectrum. (Call quality
//! in words is the UI's, one rule for both engines: `ui/src/media/stats.rs`.)

/// The centre frequency of the loudest band of a `spectrum` message (magnitudes in dB, bands
/// spread evenly over 0 .. rate/2). Returns `(hz, db)`.
pub fn peak_frequency(magnitudes_db: &[f32], rate: u32) -> Option<(f64, f32)> {
    let bands = magnitudes_db.len();
    if bands == 0 {
        return None;
    }
    let (i, db) = magnitudes_db
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let width = f64::from(rate) / 2.0 / bands as f64;
    Some(((i as f64 + 0.5) * width, db))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_is_the_loudest_band() {
        let mut m = vec![-80.0f32; 1024];
        // 48 kHz over 1024 bands: 23.4 Hz each; 440 Hz is band 18.
        m[18] = -10.0;
        let (hz, db) = peak_frequency(&m, 48_000).unwrap();
        assert!((hz - 433.6).abs() < 1.0, "{hz}");
        assert_eq!(db, -10.0);
        assert_eq!(peak_frequency(&[], 48_000), None);
    }
}
