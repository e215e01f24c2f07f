//! Who may call what. Every method of every service needs exactly one scope,
//! listed in [`POLICY`]; a method without a line there is refused, so a new
//! RPC is unreachable until someone decides who may call it.

pub use crm_platform::scope::{Scope, allows, scopes_of};

/// Every method of the suite and the scope it requires: one line per method.
pub const POLICY: &[(&str, Scope)] = &[
    ("/crm.contacts.v1.ContactsService/GetContact", Scope::ContactsRead),
    ("/crm.contacts.v1.ContactsService/ListContacts", Scope::ContactsRead),
    ("/crm.contacts.v1.ContactsService/ExportContacts", Scope::ContactsRead),
    ("/crm.contacts.v1.ContactsService/LookupContact", Scope::ContactsRead),
    ("/crm.contacts.v1.ContactsService/SearchContacts", Scope::ContactsRead),
    ("/crm.contacts.v1.ContactsService/FindDuplicates", Scope::ContactsRead),
    ("/crm.contacts.v1.ContactsService/GetOrganization", Scope::ContactsRead),
    ("/crm.contacts.v1.ContactsService/ListOrganizations", Scope::ContactsRead),
    ("/crm.contacts.v1.ContactsService/FindDuplicateOrganizations", Scope::ContactsRead),
    ("/crm.contacts.v1.ContactsService/ListRelationships", Scope::ContactsRead),
    ("/crm.contacts.v1.ContactsService/ListAuditEvents", Scope::ContactsRead),
    ("/crm.contacts.v1.ContactsService/CreateContact", Scope::ContactsWrite),
    ("/crm.contacts.v1.ContactsService/UpdateContact", Scope::ContactsWrite),
    ("/crm.contacts.v1.ContactsService/DeleteContact", Scope::ContactsWrite),
    ("/crm.contacts.v1.ContactsService/MergeContacts", Scope::ContactsWrite),
    ("/crm.contacts.v1.ContactsService/FitMatcher", Scope::ContactsWrite),
    ("/crm.contacts.v1.ContactsService/ImportContacts", Scope::ContactsWrite),
    ("/crm.contacts.v1.ContactsService/EraseContact", Scope::ContactsErase),
    ("/crm.contacts.v1.ContactsService/CreateOrganization", Scope::ContactsWrite),
    ("/crm.contacts.v1.ContactsService/UpdateOrganization", Scope::ContactsWrite),
    ("/crm.contacts.v1.ContactsService/DeleteOrganization", Scope::ContactsWrite),
    ("/crm.contacts.v1.ContactsService/MergeOrganizations", Scope::ContactsWrite),
    ("/crm.contacts.v1.ContactsService/CreateRelationship", Scope::ContactsWrite),
    ("/crm.contacts.v1.ContactsService/DeleteRelationship", Scope::ContactsWrite),
    ("/crm.contacts.v1.ContactsService/Subscribe", Scope::ContactsRead),
    ("/crm.contacts.v1.ContactsService/ListEvents", Scope::ContactsRead),
    ("/crm.interactions.v1.InteractionsService/RecordInteraction", Scope::InteractionsWrite),
    ("/crm.interactions.v1.InteractionsService/IngestInteractions", Scope::InteractionsIngest),
    ("/crm.interactions.v1.InteractionsService/UploadInteractions", Scope::InteractionsIngest),
    ("/crm.interactions.v1.InteractionsService/GetInteraction", Scope::InteractionsRead),
    ("/crm.interactions.v1.InteractionsService/ListInteractions", Scope::InteractionsRead),
    ("/crm.interactions.v1.InteractionsService/GetContactSummary", Scope::InteractionsRead),
    ("/crm.interactions.v1.InteractionsService/ListOverdueInvoices", Scope::InteractionsRead),
    ("/crm.interactions.v1.InteractionsService/CheckContactFrequency", Scope::InteractionsRead),
    ("/crm.interactions.v1.InteractionsService/Subscribe", Scope::InteractionsRead),
    ("/crm.interactions.v1.InteractionsService/ListEvents", Scope::InteractionsRead),
    ("/crm.segmentation.v1.SegmentationService/ListFeatures", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/GetContactFeatures", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/RebuildReadModel", Scope::SegmentsWrite),
    ("/crm.segmentation.v1.SegmentationService/GetReadModelStatus", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/CreateSegment", Scope::SegmentsWrite),
    ("/crm.segmentation.v1.SegmentationService/GetSegment", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/UpdateSegment", Scope::SegmentsWrite),
    ("/crm.segmentation.v1.SegmentationService/ListSegments", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/DeleteSegment", Scope::SegmentsWrite),
    ("/crm.segmentation.v1.SegmentationService/PreviewSegment", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/ListSegmentMembers", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/GetContactSegments", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/AddSegmentMembers", Scope::SegmentsWrite),
    ("/crm.segmentation.v1.SegmentationService/RemoveSegmentMembers", Scope::SegmentsWrite),
    ("/crm.segmentation.v1.SegmentationService/ExportSegment", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/GetSegmentSizes", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/GetCustomerMovement", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/GetRevenueConcentration", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/ComputeAssociationRules", Scope::SegmentsWrite),
    ("/crm.segmentation.v1.SegmentationService/GetAssociationRules", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/GetNextBestOffers", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/ComputeRfm", Scope::SegmentsWrite),
    ("/crm.segmentation.v1.SegmentationService/GetRfmSummary", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/GetContactRfm", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/FitLifetimeValue", Scope::SegmentsWrite),
    ("/crm.segmentation.v1.SegmentationService/GetLifetimeValueModel", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/GetContactLifetimeValue", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/CreateScoreModel", Scope::SegmentsWrite),
    ("/crm.segmentation.v1.SegmentationService/GetScoreModel", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/UpdateScoreModel", Scope::SegmentsWrite),
    ("/crm.segmentation.v1.SegmentationService/ListScoreModels", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/ListScoreModelVersions", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/GetContactScore", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/GetServiceTier", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/Subscribe", Scope::SegmentsRead),
    ("/crm.segmentation.v1.SegmentationService/ListEvents", Scope::SegmentsRead),
    ("/crm.alerting.v1.AlertingService/CreateSlo", Scope::AlertsWrite),
    ("/crm.alerting.v1.AlertingService/GetSlo", Scope::AlertsRead),
    ("/crm.alerting.v1.AlertingService/ListSlos", Scope::AlertsRead),
    ("/crm.alerting.v1.AlertingService/DeleteSlo", Scope::AlertsWrite),
    ("/crm.alerting.v1.AlertingService/GetSloStatus", Scope::AlertsRead),
    ("/crm.alerting.v1.AlertingService/CreateAlertRule", Scope::AlertsWrite),
    ("/crm.alerting.v1.AlertingService/GetAlertRule", Scope::AlertsRead),
    ("/crm.alerting.v1.AlertingService/ListAlertRules", Scope::AlertsRead),
    ("/crm.alerting.v1.AlertingService/DeleteAlertRule", Scope::AlertsWrite),
    ("/crm.alerting.v1.AlertingService/ListEventTypes", Scope::AlertsRead),
    ("/crm.alerting.v1.AlertingService/ListAlerts", Scope::AlertsRead),
    ("/crm.alerting.v1.AlertingService/GetAlert", Scope::AlertsRead),
    ("/crm.alerting.v1.AlertingService/AcknowledgeAlert", Scope::AlertsWrite),
    ("/crm.alerting.v1.AlertingService/ResolveAlert", Scope::AlertsWrite),
    ("/crm.alerting.v1.AlertingService/WatchAlerts", Scope::AlertsRead),
    ("/crm.alerting.v1.AlertingService/CreateSilence", Scope::AlertsWrite),
    ("/crm.alerting.v1.AlertingService/ListSilences", Scope::AlertsRead),
    ("/crm.alerting.v1.AlertingService/ExpireSilence", Scope::AlertsWrite),
    ("/crm.alerting.v1.AlertingService/CreateWebhook", Scope::AlertsWrite),
    ("/crm.alerting.v1.AlertingService/ListWebhooks", Scope::AlertsRead),
    ("/crm.alerting.v1.AlertingService/DeleteWebhook", Scope::AlertsWrite),
    ("/crm.alerting.v1.AlertingService/ListWebhookDeliveries", Scope::AlertsRead),
    ("/crm.alerting.v1.AlertingService/RetryWebhookDelivery", Scope::AlertsWrite),
    ("/crm.alerting.v1.AlertingService/Subscribe", Scope::AlertsRead),
    ("/crm.alerting.v1.AlertingService/ListEvents", Scope::AlertsRead),
    ("/crm.gateway.v1.GatewayAdminService/GetCaller", Scope::Authenticated),
    ("/crm.gateway.v1.GatewayAdminService/CreateApiKey", Scope::GatewayAdmin),
    ("/crm.gateway.v1.GatewayAdminService/GetApiKey", Scope::GatewayAdmin),
    ("/crm.gateway.v1.GatewayAdminService/ListApiKeys", Scope::GatewayAdmin),
    ("/crm.gateway.v1.GatewayAdminService/RevokeApiKey", Scope::GatewayAdmin),
    ("/crm.gateway.v1.GatewayAdminService/Subscribe", Scope::GatewayAdmin),
    ("/crm.gateway.v1.GatewayAdminService/ListEvents", Scope::GatewayAdmin),
];

/// The scope the method at `path` requires; `None` when it has no policy.
pub fn required_scope(path: &str) -> Option<Scope> {
    POLICY.iter().find(|(method, _)| *method == path).map(|(_, scope)| *scope)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use crm_platform::principal::{AccessRole, Principal};

    use super::*;

    #[test]
    fn every_method_in_the_contracts_has_a_policy() {
        let mut missing = Vec::new();
        for service in crm_proto::services() {
            for method in &service.methods {
                let path = service.path(method);
                if required_scope(&path).is_none() {
                    missing.push(path);
                }
            }
        }
        assert!(missing.is_empty(), "methods without an access policy (add them to POLICY): {missing:?}");
    }

    #[test]
    fn every_policy_line_names_a_real_method_once() {
        let real: HashSet<String> = crm_proto::services()
            .iter()
            .flat_map(|service| service.methods.iter().map(|method| service.path(method)))
            .collect();
        let mut seen = HashSet::new();
        for (path, _) in POLICY {
            assert!(real.contains(*path), "POLICY names {path}, which no contract defines");
            assert!(seen.insert(*path), "POLICY lists {path} twice");
        }
    }

    #[test]
    fn admin_has_every_scope_and_sre_sees_no_customer_data() {
        let admin = Principal { key_id: "a".into(), roles: vec![AccessRole::Admin] };
        assert!(Scope::ALL.iter().all(|scope| allows(&admin, *scope)));
        let sre = Principal { key_id: "s".into(), roles: vec![AccessRole::Sre] };
        assert!(!allows(&sre, Scope::ContactsRead) && !allows(&sre, Scope::InteractionsRead));
        assert!(allows(&sre, Scope::AlertsRead));
    }
}
