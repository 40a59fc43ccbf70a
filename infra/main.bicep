// CustomerId Backstamping Hydration: a Flex Consumption Function App that reaches storage, monitoring
// and Dataverse with one user-assigned managed identity. No keys or connection strings are issued.
// Deploy with `azd up` (azure.yaml at the repository root) or `az deployment group create`.
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('Name of the environment (azd: AZURE_ENV_NAME); with the resource group it seeds the resource names.')
param environmentName string

@minLength(1)
@description('Region of every resource; it must offer the Flex Consumption plan.')
param location string = resourceGroup().location

@minLength(1)
@description('The Dataverse organization URL, e.g. https://contoso.crm.dynamics.com (app setting DATAVERSE_URL).')
param dataverseUrl string

@minLength(1)
@description('The unification manifest (app setting HYDRATION_MANIFEST): its JSON text, or that text encoded in base64, which passes through azd environment values unharmed.')
param hydrationManifest string

@description('NCRONTAB schedule of the timer that looks for settled unification changes (HYDRATION_SCHEDULE).')
param hydrationSchedule string = '0 */15 * * * *'

@minLength(1)
@maxLength(40)
@description('Prefix of the state tables (HYDRATION_TABLE_PREFIX): letters and digits, starting with a letter.')
param tablePrefix string = 'hydration'

@minValue(1)
@maxValue(1000)
@description('Most instances per function group: a cost control. Dataverse load is governed by the app itself.')
param maximumInstanceCount int = 40

@allowed([
  512
  2048
  4096
])
@description('Memory of each instance, in MB.')
param instanceMemoryMB int = 2048

@description('Further app settings, e.g. {"HYDRATION_STALE_LINKS": "report"}; names must be settings the app reads. The settings above always win.')
param additionalAppSettings object = {}

@description('Create a custom Event Grid topic for unification events; the post-deploy hook subscribes the function unification_completed to it.')
param createEventGridSubscription bool = false

@description('Optional object id of the principal that publishes unification events to the topic (role EventGrid Data Sender).')
param eventPublisherPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
@description('Type of eventPublisherPrincipalId.')
param eventPublisherPrincipalType string = 'ServicePrincipal'

@description('Optional object id of a user or group that runs the command line (status, plan) against the queue and state tables.')
param operatorPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
@description('Type of operatorPrincipalId.')
param operatorPrincipalType string = 'User'

@description('Optional email address alerted when a table ends Failed or Held (an action group is created for it).')
param alertEmail string = ''

@description('Optional resource id of an existing action group alerted when a table ends Failed or Held.')
param alertActionGroupId string = ''

var resourceToken = toLower(uniqueString(resourceGroup().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var queueName = 'hydration-tasks'
var poisonQueueName = '${queueName}-poison'
var stateTableNames = [
  '${tablePrefix}runs'
  '${tablePrefix}tasks'
  '${tablePrefix}checkpoints'
  '${tablePrefix}retries'
]
// Accept the manifest as JSON text or as base64 of it; the app always receives the JSON text.
var manifestText = startsWith(trim(hydrationManifest), '{') ? trim(hydrationManifest) : base64ToString(hydrationManifest)

// The one identity of the app: host storage, the job queue and state tables, Application Insights, and the
// Dataverse application user.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${resourceToken}'
  location: location
  tags: tags
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    queueNames: [
      queueName
      poisonQueueName
    ]
    tableNames: stateTableNames
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

// The alert on tables that end Failed or Held, from the app's task-end records in Application Insights.
module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  params: {
    name: 'alert-failed-or-held-${resourceToken}'
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.name
    alertEmail: alertEmail
    actionGroupId: alertActionGroupId
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.name
    identityPrincipalId: identity.properties.principalId
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

module function 'app/function.bicep' = {
  name: 'function'
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.id
    identityClientId: identity.properties.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.name
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    dataverseUrl: dataverseUrl
    hydrationManifest: manifestText
    hydrationSchedule: hydrationSchedule
    tablePrefix: tablePrefix
    additionalAppSettings: additionalAppSettings
  }
  // The host starts with identity-based storage: its roles must exist first.
  dependsOn: [
    rbac
  ]
}

module eventGrid 'app/eventgrid.bicep' = if (createEventGridSubscription) {
  name: 'eventgrid'
  params: {
    name: 'evgt-${resourceToken}'
    location: location
    tags: tags
    publisherPrincipalId: eventPublisherPrincipalId
    publisherPrincipalType: eventPublisherPrincipalType
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_FUNCTION_APP_NAME string = function.outputs.name
output AZURE_FUNCTION_APP_ID string = function.outputs.id
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.properties.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.properties.principalId
output EVENT_GRID_TOPIC_ID string = createEventGridSubscription ? eventGrid.outputs.id : ''
output AZURE_ALERT_RULE_ID string = alerts.outputs.id
output EVENT_GRID_TOPIC_ENDPOINT string = createEventGridSubscription ? eventGrid.outputs.endpoint : ''
