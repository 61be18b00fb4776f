//! C-STORE as a service user: one Part 10 object to one peer (PS3.7 9.1.1),
//! on dicom-rs's upper layer. Proposes the object's SOP class in its own
//! transfer syntax and the two uncompressed ones, re-encodes the data set in
//! whichever the peer accepts, and reads the peer's status. Every failure is
//! a [`StoreError`] naming the peer and the step, never a patient attribute.

use std::time::Duration;

use dicom_core::{DataElement, VR, dicom_value};
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex as _, TransferSyntaxRegistry};
use dicom_ul::Pdu;
use dicom_ul::association::ClientAssociationOptions;
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use neurobatch_core::config::DicomDestination;
use tokio::io::AsyncWriteExt as _;

const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const C_STORE_RQ: u16 = 0x0001;
const C_STORE_RSP: u16 = 0x8001;

/// Why an object did not reach its peer.
#[derive(Debug, thiserror::Error)]
#[error("C-STORE to {peer}: {step}: {reason}")]
pub struct StoreError {
    pub peer: String,
    pub step: &'static str,
    pub reason: String,
}

/// Sends `part10` (a Part 10 file) to `peer`, calling as `calling_ae`; each
/// network step may take `timeout`. Ok when the peer answers Success or a
/// warning (0xB000, 0xB006, 0xB007: stored with coercion or elements dropped).
pub async fn c_store(
    peer: &DicomDestination,
    calling_ae: &str,
    part10: &[u8],
    timeout: Duration,
    max_pdu: u32,
) -> Result<(), StoreError> {
    let fail = |step: &'static str, reason: String| StoreError { peer: peer.to_string(), step, reason };
    let file = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Always)
        .from_reader(part10)
        .map_err(|e| fail("reading the object", e.to_string()))?;
    let meta = file.meta();
    let class = meta.media_storage_sop_class_uid().trim_end_matches('\0').to_string();
    let instance = meta.media_storage_sop_instance_uid().trim_end_matches('\0').to_string();
    let own_ts = meta.transfer_syntax().trim_end_matches('\0').to_string();
    let mut syntaxes = vec![own_ts.clone()];
    for ts in [EXPLICIT_VR_LE, IMPLICIT_VR_LE] {
        if ts != own_ts {
            syntaxes.push(ts.to_string());
        }
    }
    let options = ClientAssociationOptions::new()
        .calling_ae_title(calling_ae)
        .called_ae_title(peer.ae_title.as_str())
        .with_presentation_context(class.as_str(), syntaxes.iter().map(String::as_str).collect())
        .max_pdu_length(max_pdu)
        .read_timeout(timeout)
        .connection_timeout(timeout);
    let mut assoc = tokio::time::timeout(timeout, options.establish_async(peer.address()))
        .await
        .map_err(|_| fail("association", format!("no answer within {} s", timeout.as_secs())))?
        .map_err(|e| fail("association", e.to_string()))?;
    let Some(pc) = assoc
        .presentation_contexts()
        .iter()
        .find(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .cloned()
    else {
        let _ = assoc.abort().await;
        return Err(fail("negotiation", format!("the peer refused SOP class {class}")));
    };
    let ts = TransferSyntaxRegistry
        .get(&pc.transfer_syntax)
        .ok_or_else(|| fail("negotiation", format!("unknown transfer syntax {}", pc.transfer_syntax)))?;
    let mut data_set = Vec::new();
    file.write_dataset_with_ts(&mut data_set, ts).map_err(|e| fail("encoding the data set", e.to_string()))?;

    let command = InMemDicomObject::command_from_element_iter([
        DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, dicom_value!(Str, class.as_str())),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [C_STORE_RQ])),
        DataElement::new(tags::MESSAGE_ID, VR::US, dicom_value!(U16, [1])),
        DataElement::new(tags::PRIORITY, VR::US, dicom_value!(U16, [0])),
        DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, dicom_value!(U16, [0x0000])),
        DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, dicom_value!(Str, instance.as_str())),
    ]);
    let mut command_bytes = Vec::new();
    command
        .write_dataset_with_ts(&mut command_bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| fail("encoding the command", e.to_string()))?;
    let sending = async {
        assoc
            .send(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: pc.id,
                    value_type: PDataValueType::Command,
                    is_last: true,
                    data: command_bytes,
                }],
            })
            .await
            .map_err(|e| fail("sending the command", e.to_string()))?;
        let mut writer = assoc.send_pdata(pc.id);
        writer.write_all(&data_set).await.map_err(|e| fail("sending the data set", e.to_string()))?;
        writer.finish().await.map_err(|e| fail("sending the data set", e.to_string()))?;
        let status = loop {
            match assoc.receive().await.map_err(|e| fail("reading the response", e.to_string()))? {
                Pdu::PData { data } => {
                    let Some(value) = data.iter().find(|v| v.value_type == PDataValueType::Command) else { continue };
                    let rsp =
                        InMemDicomObject::read_dataset_with_ts(&value.data[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                            .map_err(|e| fail("reading the response", e.to_string()))?;
                    let field = rsp.element(tags::COMMAND_FIELD).ok().and_then(|e| e.uint16().ok());
                    if field != Some(C_STORE_RSP) {
                        return Err(fail("reading the response", format!("unexpected command {field:?}")));
                    }
                    break rsp.element(tags::STATUS).ok().and_then(|e| e.uint16().ok());
                }
                Pdu::AbortRQ { .. } => return Err(fail("reading the response", "the peer aborted".into())),
                other => return Err(fail("reading the response", format!("unexpected PDU {other:?}"))),
            }
        };
        Ok::<Option<u16>, StoreError>(status)
    };
    let status = match tokio::time::timeout(timeout * 4, sending).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            let _ = assoc.abort().await;
            return Err(e);
        }
        Err(_) => {
            let _ = assoc.abort().await;
            return Err(fail("sending", format!("not done within {} s", timeout.as_secs() * 4)));
        }
    };
    let _ = assoc.release().await;
    match status {
        Some(0x0000 | 0xB000 | 0xB006 | 0xB007) => Ok(()),
        Some(s) => Err(fail("storing", format!("the peer answered status 0x{s:04X}"))),
        None => Err(fail("storing", "the response has no status".into())),
    }
}
