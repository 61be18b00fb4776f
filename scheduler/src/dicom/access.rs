//! Who may associate with the Storage SCP: the called AE title must be this
//! node's, and the calling AE title must be in `dicom.allowed_callers` —
//! from the listed host when the entry names one — unless
//! `dicom.allow_any_caller`. Refusals are A-ASSOCIATE-RJ with the reason
//! PS3.8 gives (calling or called AE title not recognized).

use std::net::IpAddr;

use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};
use neurobatch_core::config::DicomCaller;

/// The access rule of one association: the configured callers and the peer's address.
#[derive(Debug, Clone)]
pub(crate) struct Callers {
    pub allowed: Vec<DicomCaller>,
    pub any: bool,
    pub peer: Option<IpAddr>,
}

impl Callers {
    /// Whether `calling` (trimmed, as PS3.5 compares AE titles) from this peer may associate.
    fn allows(&self, calling: &str) -> bool {
        let calling = calling.trim_matches(' ');
        self.any
            || self
                .allowed
                .iter()
                .any(|c| c.ae_title == calling && c.host.is_none_or(|h| self.peer.is_some_and(|p| same_host(h, p))))
    }
}

/// IPv4 and its IPv4-mapped IPv6 form are the same host.
fn same_host(a: IpAddr, b: IpAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    canonical(a) == canonical(b)
}

impl AccessControl for Callers {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if called_ae_title.trim_matches(' ') != this_ae_title.trim_matches(' ') {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if !self.allows(calling_ae_title) {
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn callers(entries: &[(&str, Option<&str>)], peer: &str) -> Callers {
        Callers {
            allowed: entries
                .iter()
                .map(|(t, h)| DicomCaller {
                    ae_title: t.to_string(),
                    host: h.map(|h| h.parse().unwrap_or(IpAddr::from([0; 4]))),
                })
                .collect(),
            any: false,
            peer: peer.parse().ok(),
        }
    }

    #[test]
    fn callers_are_matched_by_title_and_host() {
        let c = callers(&[("PACS", None), ("MODALITY", Some("10.0.0.5"))], "10.0.0.9");
        assert!(c.check_access("NB", "PACS", "NB", None).is_ok());
        assert!(c.check_access("NB", "PACS  ", "NB", None).is_ok(), "trailing spaces are padding");
        assert_eq!(
            c.check_access("NB", "MODALITY", "NB", None),
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized),
            "right title, wrong host"
        );
        assert_eq!(
            c.check_access("NB", "OTHER", "NB", None),
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        );
        assert_eq!(
            c.check_access("NB", "PACS", "SOMEONE", None),
            Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized)
        );
        let mapped = callers(&[("MODALITY", Some("10.0.0.5"))], "::ffff:10.0.0.5");
        assert!(mapped.check_access("NB", "MODALITY", "NB", None).is_ok());
        let any = Callers { any: true, ..callers(&[], "10.0.0.9") };
        assert!(any.check_access("NB", "WHOEVER", "NB", None).is_ok());
        assert!(any.check_access("NB", "WHOEVER", "OTHER", None).is_err(), "the called title still matters");
    }
}
