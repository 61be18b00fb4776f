//! `imaging::bias` against its numpy port (`bias_field` in
//! scripts/testdata/intensity.py) on the half-resolution MNI152 T1 under three
//! known multiplicative fields (none, a quadratic polynomial, a sinusoid that
//! no degree-3 polynomial is), and against the known fields themselves.

mod common;

use imaging::Volume;
use imaging::bias::{BiasFieldParams, estimate};
use serde_json::Value;

fn raw(name: &str) -> Volume<f32> {
    common::load_raw_f32(&common::testdata(&format!("intensity/{name}.json")).with_extension(""))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(|x| x.as_f64().expect("number")).collect()
}

#[test]
fn bias_field_matches_numpy_and_recovers_known_fields() {
    let refs = common::load_json("intensity/bias.json");
    let indices: Vec<usize> =
        refs["indices"].as_array().expect("indices").iter().map(|v| v.as_u64().expect("index") as usize).collect();
    let mask = raw("bias_mask").map(|&v| u8::from(v != 0.0));
    for name in ["none", "polynomial", "sinusoidal"] {
        let want = &refs[name];
        let vol = raw(&format!("bias_{name}"));
        let field = estimate(&vol, &mask, &BiasFieldParams::default()).expect(name);

        // Same algorithm as numpy: same samples, iterations, coefficients and field.
        assert_eq!(field.samples() as u64, want["samples"].as_u64().expect("samples"), "{name}: samples");
        assert_eq!(field.iterations() as u64, want["iterations"].as_u64().expect("iterations"), "{name}: iterations");
        assert!(field.converged(), "{name}: did not converge");
        let coef = floats(&want["coefficients"]);
        assert_eq!(field.coefficients().len(), coef.len(), "{name}: basis size");
        for (t, (got, exp)) in field.coefficients().iter().zip(&coef).enumerate() {
            assert!((got - exp).abs() < 1e-7, "{name}: coefficient {t}: {got} vs numpy {exp}");
        }
        let log_field = field.log_field();
        let numpy = floats(&want["log_field"]);
        let truth = floats(&want["true_log_field"]);
        let mut worst = 0.0f64;
        let (mut err2, mut n) = (0.0f64, 0usize);
        for (k, &i) in indices.iter().enumerate() {
            worst = worst.max((log_field[i] - numpy[k]).abs());
            if mask.data()[i] != 0 && vol.data()[i] > 0.0 {
                err2 += (log_field[i] - truth[k]).powi(2);
                n += 1;
            }
        }
        assert!(worst < 1e-6, "{name}: log field differs from numpy by {worst}");

        // Against the truth: the residual is the template's own non-uniformity
        // (what the estimate finds on the unbiased template, sd ≈ 0.04), not the field.
        let rms = (err2 / n as f64).sqrt();
        let true_sd = want["true_sd"].as_f64().expect("true_sd");
        assert!(rms < 0.06, "{name}: rms error against the known log field {rms} (field sd {true_sd})");
        if true_sd > 0.0 {
            assert!(rms < 0.3 * true_sd, "{name}: removes too little of the field: rms {rms} vs sd {true_sd}");
        }

        // Correcting divides the field out: the corrected white matter is as
        // uniform as the unbiased template's.
        let corrected = field.correct(&vol).expect("correct");
        let ratio: Vec<f64> = vol
            .data()
            .iter()
            .zip(corrected.data())
            .zip(&log_field)
            .filter(|((x, _), _)| **x > 0.0)
            .map(|((x, c), b)| (f64::from(*x) / f64::from(*c)).ln() - b)
            .collect();
        let off = ratio.iter().fold(0.0f64, |m, r| m.max(r.abs()));
        assert!(off < 1e-5, "{name}: correct() is not x / exp(log_field): {off}");
    }
}
