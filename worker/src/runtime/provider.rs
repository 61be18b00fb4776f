//! Execution providers: the hardware a session runs on, chosen from the
//! configured preference list, skipping (with a warning) each one this library
//! or this machine cannot use, and ending on the CPU.

use std::fmt;

use ort::ep::{self, ExecutionProvider, ExecutionProviderDispatch};
use serde::{Deserialize, Serialize};

/// An execution provider a worker can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Cpu,
    Cuda,
    #[serde(rename = "tensorrt")]
    TensorRt,
}

impl Provider {
    /// ONNX Runtime's name, as `onnxruntime.get_available_providers()` lists it.
    pub fn ort_name(self) -> &'static str {
        match self {
            Provider::Cpu => "CPUExecutionProvider",
            Provider::Cuda => ep::CUDA::NAME,
            Provider::TensorRt => ep::TensorRT::NAME,
        }
    }
}

/// A provider name that is none of `cpu`, `cuda`, `tensorrt`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown execution provider `{0}` (cpu, cuda, tensorrt)")]
pub struct UnknownProvider(pub String);

/// The configuration's and the command line's spelling: `cpu`, `cuda`, `tensorrt`, any case, trimmed.
impl std::str::FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Provider::Cpu),
            "cuda" => Ok(Provider::Cuda),
            "tensorrt" => Ok(Provider::TensorRt),
            _ => Err(UnknownProvider(s.to_string())),
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::TensorRt => "tensorrt",
        })
    }
}

/// The providers to try, in order: the configured ones up to the first CPU,
/// without repeats, and the CPU last.
pub(crate) fn candidates(preferred: &[Provider]) -> Vec<Provider> {
    let mut out = Vec::with_capacity(preferred.len() + 1);
    for &p in preferred.iter().take_while(|&&p| p != Provider::Cpu) {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out.push(Provider::Cpu);
    out
}

/// The registration of a non-CPU provider, or why it cannot be registered.
/// `None` for the CPU, which every session has.
pub(crate) fn dispatch(provider: Provider) -> Result<Option<ExecutionProviderDispatch>, String> {
    // The PyPI `onnxruntime` wheel is built without CUDA and TensorRT; asking it
    // to register them fails late and noisily, so ask what it was built with first.
    let compiled_in = |available: ort::Result<bool>| match available {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("{} is not built into this onnx runtime library", provider.ort_name())),
        Err(e) => Err(super::one_line(e)),
    };
    Ok(match provider {
        Provider::Cpu => None,
        Provider::Cuda => {
            compiled_in(ep::CUDA::is_available())?;
            Some(ep::CUDA::default().build().error_on_failure())
        }
        Provider::TensorRt => {
            compiled_in(ep::TensorRT::is_available())?;
            Some(ep::TensorRT::default().build().error_on_failure())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_end_on_the_cpu_without_repeats() {
        use Provider::*;
        assert_eq!(candidates(&[]), vec![Cpu]);
        assert_eq!(candidates(&[Cpu, Cuda]), vec![Cpu]);
        assert_eq!(candidates(&[TensorRt, Cuda, TensorRt]), vec![TensorRt, Cuda, Cpu]);
        assert_eq!(candidates(&[Cuda, Cpu, TensorRt]), vec![Cuda, Cpu]);
    }

    #[test]
    fn names_match_onnx_runtime() {
        assert_eq!(Provider::Cuda.ort_name(), "CUDAExecutionProvider");
        assert_eq!(Provider::TensorRt.ort_name(), "TensorrtExecutionProvider");
        assert_eq!(Provider::TensorRt.to_string(), "tensorrt");
    }

    #[test]
    fn names_parse_back_in_any_case_and_others_are_named_in_the_error() {
        for p in [Provider::Cpu, Provider::Cuda, Provider::TensorRt] {
            assert_eq!(p.to_string().parse::<Provider>(), Ok(p));
            assert_eq!(format!(" {} ", p.to_string().to_uppercase()).parse::<Provider>(), Ok(p));
        }
        let err = "rocm".parse::<Provider>().unwrap_err();
        assert_eq!(err.to_string(), "unknown execution provider `rocm` (cpu, cuda, tensorrt)");
    }
}
