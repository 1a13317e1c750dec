//! How the driver learns that the device answered: by polling the used ring, or by waiting for
//! the vGPU's interrupt ([`InterruptSource`], in a guest [`super::uio::UioInterrupt`]).

use std::time::Duration;

/// How requests complete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// Spin on the used ring (`INTR_ENABLE` = 0; the default, and the fastest).
    #[default]
    Poll,
    /// Enable `INTR_ENABLE.QUEUE` and sleep until the interrupt (needs `intr=intx` in the VMM
    /// and `uio_pci_generic` in the guest).
    Irq,
}

impl Completion {
    /// Name as the `--completion` flag takes it.
    pub fn name(self) -> &'static str {
        match self {
            Completion::Poll => "poll",
            Completion::Irq => "irq",
        }
    }
}

impl std::str::FromStr for Completion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "poll" => Ok(Completion::Poll),
            "irq" => Ok(Completion::Irq),
            other => Err(format!("completion {other:?} is not poll or irq")),
        }
    }
}

/// A level-triggered interrupt the driver can sleep on, masked by its owner after each delivery
/// (what `uio_pci_generic` does with INTx Disable).
pub trait InterruptSource: Send {
    /// Unmasks the line (after the driver acknowledged the cause at the device).
    fn unmask(&mut self) -> std::io::Result<()>;
    /// Sleeps until an interrupt was delivered since the last wait, or `timeout` passed
    /// (`Ok(false)`).
    fn wait(&mut self, timeout: Duration) -> std::io::Result<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_parses_its_names() {
        for c in [Completion::Poll, Completion::Irq] {
            assert_eq!(c.name().parse::<Completion>().unwrap(), c);
        }
        assert!("msi".parse::<Completion>().is_err());
        assert_eq!(serde_json::to_string(&Completion::Irq).unwrap(), "\"irq\"");
    }
}
