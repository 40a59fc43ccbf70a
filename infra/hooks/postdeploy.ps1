# azd postdeploy hook (Windows twin of postdeploy.sh): subscribe the function unification_completed to
# the custom Event Grid topic. Does nothing unless CREATE_EVENT_GRID_SUBSCRIPTION is true.
$ErrorActionPreference = 'Stop'

if (@('true', '1', 'yes') -notcontains "$env:CREATE_EVENT_GRID_SUBSCRIPTION".ToLower()) {
    Write-Host 'Event Grid subscription: not requested (CREATE_EVENT_GRID_SUBSCRIPTION is not true).'
    exit 0
}

$topicId = "$env:EVENT_GRID_TOPIC_ID"
$appId = "$env:AZURE_FUNCTION_APP_ID"
$name = if ($env:EVENT_GRID_SUBSCRIPTION_NAME) { $env:EVENT_GRID_SUBSCRIPTION_NAME } else { 'hydration-unification-completed' }
if (-not $topicId -or -not $appId) {
    Write-Error "Event Grid subscription: EVENT_GRID_TOPIC_ID and AZURE_FUNCTION_APP_ID are needed; run 'azd provision' with CREATE_EVENT_GRID_SUBSCRIPTION=true first."
    exit 1
}

Write-Host "Event Grid subscription '$name': $topicId -> $appId/functions/unification_completed"
az eventgrid event-subscription create `
    --name $name `
    --source-resource-id $topicId `
    --endpoint-type azurefunction `
    --endpoint "$appId/functions/unification_completed" `
    --included-event-types Hydration.UnificationCompleted `
    --event-delivery-schema eventgridschema `
    --max-delivery-attempts 10 `
    --event-ttl 1440 `
    --output none
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
