//! One association, after negotiation: DIMSE messages in P-DATA, answered
//! in order. C-ECHO-RQ gets a success; C-STORE-RQ streams its data set into
//! an [`Incoming`] instance and answers once it is in the inbox (or with the
//! failure status and nothing kept). Any other command is answered "unrecognized
//! operation". A malformed command, an unexpected PDU or a silent peer ends
//! this association only; release and abort are honoured. Logs name the
//! caller's AE title and the outcome, never a patient attribute or a UID.

use std::path::PathBuf;
use std::time::Duration;

use dicom_core::{DataElement, VR, dicom_value};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::Pdu;
use dicom_ul::association::AsyncServerAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use dicom_ul::prelude::*;
use tokio::net::TcpStream;

use super::instance::Incoming;

/// What an association needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub inbox: PathBuf,
    pub idle: Duration,
    pub max_instance_bytes: u64,
}

/// Counts of one association, for its closing log line.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub echoes: u32,
    pub stored: u32,
    pub failed: u32,
}

const C_STORE_RQ: u16 = 0x0001;
const C_ECHO_RQ: u16 = 0x0030;
const NO_DATA_SET: u16 = 0x0101;
const SUCCESS: u16 = 0x0000;
/// PS3.7 C.4: the operation is not supported.
const UNRECOGNIZED_OPERATION: u16 = 0x0211;

/// The C-STORE in progress: its command fields and the instance being written.
struct Store {
    message_id: u16,
    sop_class_uid: String,
    sop_instance_uid: String,
    context_id: u8,
    instance: Result<Incoming, super::instance::InstanceError>,
}

/// Serves one established association until it is released, aborted, broken or idle.
pub(crate) async fn serve(mut assoc: AsyncServerAssociation<TcpStream>, settings: &Settings) -> Tally {
    let mut tally = Tally::default();
    let mut store: Option<Store> = None;
    let peer = assoc.peer_ae_title().to_string();
    loop {
        let pdu = match tokio::time::timeout(settings.idle, assoc.receive()).await {
            Err(_) => {
                tracing::info!(caller = %peer, "dicom association idle: aborted");
                break;
            }
            Ok(Err(e)) => {
                tracing::info!(caller = %peer, error = %e, "dicom association ended");
                break;
            }
            Ok(Ok(pdu)) => pdu,
        };
        match pdu {
            Pdu::PData { data } => {
                if let Err(reason) = on_pdata(&mut assoc, settings, &mut store, &mut tally, data).await {
                    tracing::warn!(caller = %peer, %reason, "dicom association aborted");
                    break;
                }
            }
            Pdu::ReleaseRQ => {
                let _ = assoc.send(&Pdu::ReleaseRP).await;
                break;
            }
            Pdu::AbortRQ { .. } => break,
            other => {
                tracing::warn!(caller = %peer, pdu = %other.short_description(), "dicom association: unexpected PDU");
                break;
            }
        }
    }
    if let Some(Store { instance: Ok(i), .. }) = store {
        i.discard();
    }
    let _ = assoc.abort().await;
    tally
}

/// Handles the values of one P-DATA PDU; an error ends the association.
async fn on_pdata(
    assoc: &mut AsyncServerAssociation<TcpStream>,
    settings: &Settings,
    store: &mut Option<Store>,
    tally: &mut Tally,
    values: Vec<PDataValue>,
) -> Result<(), String> {
    for value in values {
        match value.value_type {
            PDataValueType::Command => {
                if !value.is_last {
                    // Commands are small; a fragmented one is not worth reassembling.
                    return Err("fragmented command set".into());
                }
                if store.is_some() {
                    return Err("a command arrived before the previous data set ended".into());
                }
                let cmd = read_command(&value.data)?;
                let field = uint(&cmd, tags::COMMAND_FIELD).ok_or("command without CommandField")?;
                let message_id = uint(&cmd, tags::MESSAGE_ID).unwrap_or(0);
                match field {
                    C_ECHO_RQ => {
                        respond(assoc, value.presentation_context_id, echo_response(message_id)).await?;
                        tally.echoes += 1;
                    }
                    C_STORE_RQ => {
                        let sop_class_uid =
                            text(&cmd, tags::AFFECTED_SOP_CLASS_UID).ok_or("C-STORE without SOP class")?;
                        let sop_instance_uid =
                            text(&cmd, tags::AFFECTED_SOP_INSTANCE_UID).ok_or("C-STORE without SOP instance")?;
                        let ts = assoc
                            .presentation_contexts()
                            .iter()
                            .find(|pc| {
                                pc.id == value.presentation_context_id
                                    && pc.reason == PresentationContextResultReason::Acceptance
                            })
                            .map(|pc| pc.transfer_syntax.trim_end_matches('\0').to_string())
                            .ok_or("C-STORE on a presentation context that was not accepted")?;
                        let inbox = settings.inbox.clone();
                        let (class, instance, limit) =
                            (sop_class_uid.clone(), sop_instance_uid.clone(), settings.max_instance_bytes);
                        let incoming = tokio::task::spawn_blocking(move || {
                            Incoming::for_data_set(&inbox, &class, &instance, &ts, limit)
                        })
                        .await
                        .map_err(|e| e.to_string())?;
                        *store = Some(Store {
                            message_id,
                            sop_class_uid,
                            sop_instance_uid,
                            context_id: value.presentation_context_id,
                            instance: incoming,
                        });
                    }
                    other => {
                        let rsp = status_response(other | 0x8000, message_id, UNRECOGNIZED_OPERATION);
                        respond(assoc, value.presentation_context_id, rsp).await?;
                    }
                }
            }
            PDataValueType::Data => {
                let Some(current) = store.as_mut() else {
                    return Err("a data set without a C-STORE command".into());
                };
                if current.context_id != value.presentation_context_id {
                    return Err("a data set on another presentation context".into());
                }
                if let Ok(instance) = current.instance.as_mut()
                    && let Err(e) = instance.append(&value.data)
                {
                    current.instance = Err(e);
                }
                if value.is_last {
                    let Some(done) = store.take() else { continue };
                    let status = finish(done.instance, settings).await;
                    if status == SUCCESS {
                        tally.stored += 1;
                    } else {
                        tally.failed += 1;
                    }
                    let rsp = store_response(done.message_id, &done.sop_class_uid, &done.sop_instance_uid, status);
                    respond(assoc, done.context_id, rsp).await?;
                }
            }
        }
    }
    Ok(())
}

/// Completes an instance off the async threads; its C-STORE status.
async fn finish(instance: Result<Incoming, super::instance::InstanceError>, settings: &Settings) -> u16 {
    let instance = match instance {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "dicom instance refused");
            return e.status();
        }
    };
    let inbox = settings.inbox.clone();
    match tokio::task::spawn_blocking(move || instance.finish(&inbox, None)).await {
        Ok(Ok(_)) => SUCCESS,
        Ok(Err(refused)) => {
            tracing::warn!(error = %refused.error, "dicom instance refused");
            refused.error.status()
        }
        Err(e) => {
            tracing::error!(error = %e, "dicom instance: the writer task failed");
            0xA700
        }
    }
}

fn read_command(bytes: &[u8]) -> Result<InMemDicomObject, String> {
    InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| format!("unreadable command set: {e}"))
}

fn uint(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<u16> {
    obj.element(tag).ok()?.uint16().ok()
}

fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    let s = obj.element(tag).ok()?.to_str().ok()?.trim_end_matches(['\0', ' ']).to_string();
    (!s.is_empty()).then_some(s)
}

fn echo_response(message_id: u16) -> InMemDicomObject {
    status_response(0x8030, message_id, SUCCESS)
}

fn status_response(command_field: u16, message_id: u16, status: u16) -> InMemDicomObject {
    InMemDicomObject::command_from_element_iter([
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [command_field])),
        DataElement::new(tags::MESSAGE_ID_BEING_RESPONDED_TO, VR::US, dicom_value!(U16, [message_id])),
        DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, dicom_value!(U16, [NO_DATA_SET])),
        DataElement::new(tags::STATUS, VR::US, dicom_value!(U16, [status])),
    ])
}

fn store_response(message_id: u16, sop_class_uid: &str, sop_instance_uid: &str, status: u16) -> InMemDicomObject {
    InMemDicomObject::command_from_element_iter([
        DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, dicom_value!(Str, sop_class_uid)),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [0x8001])),
        DataElement::new(tags::MESSAGE_ID_BEING_RESPONDED_TO, VR::US, dicom_value!(U16, [message_id])),
        DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, dicom_value!(U16, [NO_DATA_SET])),
        DataElement::new(tags::STATUS, VR::US, dicom_value!(U16, [status])),
        DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, dicom_value!(Str, sop_instance_uid)),
    ])
}

async fn respond(
    assoc: &mut AsyncServerAssociation<TcpStream>,
    context_id: u8,
    command: InMemDicomObject,
) -> Result<(), String> {
    let mut data = Vec::new();
    command
        .write_dataset_with_ts(&mut data, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| format!("writing a response: {e}"))?;
    let pdu = Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: context_id,
            value_type: PDataValueType::Command,
            is_last: true,
            data,
        }],
    };
    assoc.send(&pdu).await.map_err(|e| format!("sending a response: {e}"))
}
