// An alert when a table's task ends Failed or Held: both need an operator (docs/operations.md). The app
// logs one record per task end with the fields this query reads (hydration/telemetry.py,
// task_end_fields); the query runs over Application Insights' traces every evaluationFrequency.
param name string
param location string
param tags object
param applicationInsightsName string

@description('Optional email address that receives the alert (an action group is created for it).')
param alertEmail string = ''

@description('Optional resource id of an existing action group that receives the alert.')
param actionGroupId string = ''

@description('How often the rule runs, and the span of logs it reads, as an ISO 8601 duration.')
param evaluationFrequency string = 'PT15M'

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource emailGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${name}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'hydration'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var emailGroups = empty(alertEmail) ? [] : [emailGroup.id]
var givenGroups = empty(actionGroupId) ? [] : [actionGroupId]

resource failedOrHeld 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: name
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Hydration: a table ended Failed or Held'
    description: 'A task of the CustomerId backstamping hydration ended Failed (it needs a fix, then a retry) or Held (a pass that would re-link too many rows waits for approval). See docs/operations.md.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: evaluationFrequency
    windowSize: evaluationFrequency
    criteria: {
      allOf: [
        {
          query: 'traces | where tostring(customDimensions["hydration.event"]) == "task_ended" | where tostring(customDimensions["hydration.status"]) in ("Failed", "Held") | extend table = tostring(customDimensions["hydration.table"]), status = tostring(customDimensions["hydration.status"]), run_id = tostring(customDimensions["hydration.run_id"])'
          timeAggregation: 'Count'
          dimensions: [
            {
              name: 'table'
              operator: 'Include'
              values: [
                '*'
              ]
            }
            {
              name: 'status'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: concat(emailGroups, givenGroups)
    }
  }
}

output id string = failedOrHeld.id
