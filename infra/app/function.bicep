// The Flex Consumption plan and the Function App (Python 3.11, Linux) with its settings. Every connection
// is identity-based through the user-assigned identity; FUNCTIONS_WORKER_RUNTIME and
// FUNCTIONS_EXTENSION_VERSION are not set: on Flex Consumption the runtime is functionAppConfig.runtime.
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

param dataverseUrl string
param hydrationManifest string
param hydrationSchedule string
param tablePrefix string
param additionalAppSettings object = {}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Zone redundancy depends on the region; every step is idempotent and resumes from its checkpoint after an outage.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: The HTTP functions (POST /api/runs, GET /api/status) and Event Grid delivery need a public endpoint; each call needs a function key.
  // checkov:skip=CKV_AZURE_17: Event Grid and the callers of the HTTP functions cannot present client certificates; calls are authorised by function keys.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero; always-ready instances would cost money for a job that runs after unification.
  // checkov:skip=CKV_AZURE_213: No health-check path: the functions are triggers and jobs, and the platform restarts a failed host.
  name: name
  location: location
  // azd deploys the service "app" of azure.yaml to the site carrying this tag.
  tags: union(tags, {
    'azd-service-name': 'app'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  // The whole set of app settings: a deployment replaces settings made by hand, so further ones go
  // through the additionalAppSettings parameter. The explicit settings below win over it.
  resource appSettings 'config' = {
    // These checks read the site's web configuration; this resource is the app settings only.
    // checkov:skip=CKV_AZURE_13: Not applicable to app settings (web configuration check).
    // checkov:skip=CKV_AZURE_63: Not applicable to app settings (web configuration check).
    // checkov:skip=CKV_AZURE_65: Not applicable to app settings (web configuration check).
    // checkov:skip=CKV_AZURE_66: Not applicable to app settings (web configuration check).
    // checkov:skip=CKV_AZURE_80: Not applicable to app settings (web configuration check; no .NET here).
    // checkov:skip=CKV_AZURE_88: Not applicable to app settings (web configuration check; no file share is used).
    // checkov:skip=CKV_AZURE_222: Not applicable to app settings (web configuration check).
    name: 'appsettings'
    properties: union(additionalAppSettings, {
      // Functions host storage (leases, timers, keys) with the identity.
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identityClientId
      AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
      AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
      AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
      // Telemetry with Entra ID authentication.
      APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
      // The job queue and state tables: read by the app's clients and by the queue trigger (connection
      // HYDRATION_STORAGE).
      HYDRATION_STORAGE__credential: 'managedidentity'
      HYDRATION_STORAGE__clientId: identityClientId
      HYDRATION_STORAGE__queueServiceUri: storage.properties.primaryEndpoints.queue
      HYDRATION_STORAGE__tableServiceUri: storage.properties.primaryEndpoints.table
      // Dataverse tokens: DefaultAzureCredential picks the user-assigned identity by this client id.
      AZURE_CLIENT_ID: identityClientId
      DATAVERSE_URL: dataverseUrl
      HYDRATION_MANIFEST: hydrationManifest
      HYDRATION_SCHEDULE: hydrationSchedule
      HYDRATION_TABLE_PREFIX: tablePrefix
    })
  }
}

output name string = functionApp.name
output id string = functionApp.id
output defaultHostName string = functionApp.properties.defaultHostName
