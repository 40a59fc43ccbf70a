// Optional custom Event Grid topic for "unification completed" events (event type
// Hydration.UnificationCompleted). Publishers authenticate with Entra ID only (role EventGrid Data Sender);
// the subscription to the function is created after the code is deployed (infra/hooks/postdeploy.sh).
param name string
param location string
param tags object

@description('Optional principal id of the publisher (e.g. the identity of a flow that runs after unification).')
param publisherPrincipalId string = ''
param publisherPrincipalType string = 'ServicePrincipal'

var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = {
  // checkov:skip=CKV_AZURE_193: Publishers (e.g. a flow run after unification) are outside any private network; publishing needs Entra ID (local auth is off).
  name: name
  location: location
  tags: tags
  // Not used for delivery today; lets a dead-letter destination or identity-based delivery be added.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: 'EventGridSchema'
    disableLocalAuth: true
    minimumTlsVersionAllowed: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource publisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(publisherPrincipalId)) {
  name: guid(topic.id, publisherPrincipalId, eventGridDataSender)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
    principalId: publisherPrincipalId
    principalType: publisherPrincipalType
    description: 'Publishes unification events'
  }
}

output id string = topic.id
output endpoint string = topic.properties.endpoint
