// The npm client `dynamics-web-api`, as shipped, running its standard operations against the emulator.
//
// Usage: node dynamics_web_api.cjs '<scene JSON>'   (scene: serverUrl, contacts, profile, lead, user)
// Prints one JSON object: for each step its result ({ok: true, value}) or its error
// ({ok: false, status, code, message, headers}). tests/conformance/test_dynamics_web_api.py runs it
// and checks every step against what the emulator stored. The emulator's CA is trusted through
// NODE_EXTRA_CA_CERTS, the standard node setting; nothing in the client is changed.
"use strict";

const { DynamicsWebApi } = require("dynamics-web-api");

const scene = JSON.parse(process.argv[2]);
const NAV = "msdynci_lookupfield_customerprofile";
const RELATIONSHIP = "msdynci_customerprofile_contact";
const api = new DynamicsWebApi({
  serverUrl: scene.serverUrl,
  dataApi: { version: "9.2" },
  onTokenRefresh: async () => scene.user,
});
const results = {};

async function step(name, run) {
  try {
    const value = await run();
    results[name] = { ok: true, value: value === undefined ? null : value };
  } catch (error) {
    results[name] = {
      ok: false,
      status: error.status ?? null,
      code: error.code ?? null,
      message: error.message ?? String(error),
      headers: error.headers ?? null,
    };
  }
}

async function metadata() {
  await step("whoami", () => api.callFunction("WhoAmI"));
  await step("entity", () =>
    api.retrieveEntity({ key: "LogicalName='contact'", select: ["LogicalName", "EntitySetName", "MetadataId"] }),
  );
  await step("entities", () =>
    api.retrieveEntities({ select: ["LogicalName", "EntitySetName"], filter: "LogicalName eq 'lead'" }),
  );
  const id = results.entity.ok ? results.entity.value.MetadataId : "00000000-0000-0000-0000-000000000000";
  await step("entityById", () => api.retrieveEntity({ key: id, select: ["LogicalName"] }));
  await step("lookupAttributes", () =>
    api.retrieveAttributes({
      entityKey: "LogicalName='contact'",
      select: ["LogicalName"],
      filter: "AttributeType eq Microsoft.Dynamics.CRM.AttributeTypeCode'Lookup'",
    }),
  );
  await step("picklists", () =>
    api.retrieveAttributes({
      entityKey: "LogicalName='contact'",
      castType: "Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
      select: ["LogicalName"],
      expand: [{ property: "OptionSet", select: ["Options"] }],
    }),
  );
  await step("stateOptions", () =>
    api.retrieveAttribute({
      entityKey: id,
      attributeKey: "LogicalName='statecode'",
      castType: "Microsoft.Dynamics.CRM.StateAttributeMetadata",
      select: ["LogicalName"],
      expand: [{ property: "OptionSet" }],
    }),
  );
  await step("relationships", () =>
    api.retrieveRelationships({
      castType: "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
      select: ["SchemaName", "ReferencingEntityNavigationPropertyName"],
      filter: "ReferencingEntity eq 'contact'",
    }),
  );
  await step("relationship", () => api.retrieveRelationship({ key: `SchemaName='${RELATIONSHIP}'` }));
}

async function queries() {
  const [first, second] = scene.contacts;
  await step("all", () =>
    api.retrieveAll({ collection: "contacts", select: ["fullname"], filter: "statecode eq 0", maxPageSize: 9 }),
  );
  await step("top", () =>
    api.retrieveMultiple({ collection: "contacts", select: ["fullname"], top: 5, orderBy: ["fullname asc"] }),
  );
  await step("inDoubleQuoted", () =>
    api.retrieveMultiple({
      collection: "contacts",
      select: ["contactid"],
      filter: `Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=["${first}","${second}"])`,
    }),
  );
  await step("get", () => api.retrieve({ collection: "contacts", key: first, select: ["fullname"] }));
  const etag = results.get.ok ? results.get.value["@odata.etag"] : "*";
  await step("getUnchanged", () => api.retrieve({ collection: "contacts", key: first, ifnonematch: etag }));
  await step("count", () => api.count({ collection: "contacts" }));
  await step("countFiltered", () => api.count({ collection: "contacts", filter: "statecode eq 0" }));
}

async function writes() {
  const [first] = scene.contacts;
  await step("create", () => api.create({ collection: "contacts", data: { firstname: "Js", lastname: "Client" } }));
  const created = results.create.value;
  await step("update", () =>
    api.update({ collection: "contacts", key: created, data: { lastname: "Updated" } }),
  );
  await step("upsert", () =>
    api.upsert({ collection: "contacts", key: scene.upsertKey, data: { firstname: "Upserted" } }),
  );
  await step("putProperty", () =>
    api.updateSingleProperty({ collection: "contacts", key: first, fieldValuePair: { emailaddress1: "js@example.com" } }),
  );
  await step("getProperty", () => api.retrieve({ collection: "contacts", key: first, select: ["/emailaddress1"] }));
  await step("deleteProperty", () => api.deleteRecord({ collection: "contacts", key: first, fieldName: "emailaddress1" }));
  await step("delete", () => api.deleteRecord({ collection: "contacts", key: created }));
  await step("createMultiple", () =>
    api.callAction({
      collection: "contacts",
      actionName: "Microsoft.Dynamics.CRM.CreateMultiple",
      action: { Targets: [0, 1].map((n) => ({ "@odata.type": "Microsoft.Dynamics.CRM.contact", firstname: `Bulk ${n}` })) },
    }),
  );
  const ids = results.createMultiple.ok ? results.createMultiple.value.Ids : [];
  await step("updateMultiple", () =>
    api.callAction({
      collection: "contacts",
      actionName: "Microsoft.Dynamics.CRM.UpdateMultiple",
      action: { Targets: ids.map((id) => ({ "@odata.type": "Microsoft.Dynamics.CRM.contact", contactid: id, lastname: "Many" })) },
    }),
  );
}

// Each link step is followed by a read of the lookup it changed, so the test sees every state.
async function linked(name, key) {
  await step(name, async () => (await api.retrieve({ collection: "contacts", key, select: [`_${NAV}_value`] }))[`_${NAV}_value`]);
}

async function links() {
  const [first, second] = scene.contacts;
  const profileUrl = `msdynci_customerprofiles(${scene.profile})`;
  await step("bind", () =>
    api.update({ collection: "contacts", key: first, data: { [`${NAV}@odata.bind`]: profileUrl } }),
  );
  await linked("afterBind", first);
  await step("clear", () =>
    api.disassociateSingleValued({ collection: "contacts", primaryKey: first, navigationProperty: NAV }),
  );
  await linked("afterClear", first);
  await step("associateSingle", () =>
    api.associateSingleValued({
      collection: "contacts",
      primaryKey: first,
      navigationProperty: NAV,
      relatedCollection: "msdynci_customerprofiles",
      relatedKey: scene.profile,
    }),
  );
  await linked("afterAssociateSingle", first);
  await step("associate", () =>
    api.associate({
      collection: "msdynci_customerprofiles",
      primaryKey: scene.profile,
      relationshipName: RELATIONSHIP,
      relatedCollection: "contacts",
      relatedKey: second,
    }),
  );
  await linked("afterAssociate", second);
  await step("disassociate", () =>
    api.disassociate({
      collection: "msdynci_customerprofiles",
      primaryKey: scene.profile,
      relationshipName: RELATIONSHIP,
      relatedKey: second,
    }),
  );
  await linked("afterDisassociate", second);
}

async function batch() {
  const [first] = scene.contacts;
  api.startBatch();
  api.retrieve({ collection: "contacts", key: first, select: ["fullname"] });
  api.create({ collection: "leads", data: { firstname: "Batched", lastname: "Lead" } });
  api.update({ collection: "contacts", key: first, data: { emailaddress1: "batched@example.com" } });
  await step("batch", () => api.executeBatch());
}

async function throttled() {
  await step("throttled", () => api.retrieve({ collection: "leads", key: scene.lead, select: ["fullname"] }));
  await step("afterThrottle", () => api.retrieve({ collection: "leads", key: scene.lead, select: ["fullname"] }));
}

async function main() {
  await metadata();
  await queries();
  await writes();
  await links();
  await batch();
  await throttled();
  process.stdout.write(JSON.stringify(results));
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error));
  process.exit(1);
});
