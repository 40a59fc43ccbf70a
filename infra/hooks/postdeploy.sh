#!/bin/sh
# azd postdeploy hook: subscribe the function unification_completed to the custom Event Grid topic made by
# infra/app/eventgrid.bicep. It runs after deploy because Event Grid validates an Azure Function endpoint
# against the deployed function. Does nothing unless CREATE_EVENT_GRID_SUBSCRIPTION is true.
# Reads (azd passes its environment values and the Bicep outputs): CREATE_EVENT_GRID_SUBSCRIPTION,
# EVENT_GRID_TOPIC_ID, AZURE_FUNCTION_APP_ID; optional EVENT_GRID_SUBSCRIPTION_NAME.
set -eu

case "$(printf '%s' "${CREATE_EVENT_GRID_SUBSCRIPTION:-false}" | tr '[:upper:]' '[:lower:]')" in
  true | 1 | yes) ;;
  *)
    echo "Event Grid subscription: not requested (CREATE_EVENT_GRID_SUBSCRIPTION is not true)."
    exit 0
    ;;
esac

topic_id="${EVENT_GRID_TOPIC_ID:-}"
app_id="${AZURE_FUNCTION_APP_ID:-}"
name="${EVENT_GRID_SUBSCRIPTION_NAME:-hydration-unification-completed}"
if [ -z "$topic_id" ] || [ -z "$app_id" ]; then
  echo "Event Grid subscription: EVENT_GRID_TOPIC_ID and AZURE_FUNCTION_APP_ID are needed;" \
    "run 'azd provision' with CREATE_EVENT_GRID_SUBSCRIPTION=true first." >&2
  exit 1
fi

echo "Event Grid subscription '$name': $topic_id -> $app_id/functions/unification_completed"
az eventgrid event-subscription create \
  --name "$name" \
  --source-resource-id "$topic_id" \
  --endpoint-type azurefunction \
  --endpoint "$app_id/functions/unification_completed" \
  --included-event-types Hydration.UnificationCompleted \
  --event-delivery-schema eventgridschema \
  --max-delivery-attempts 10 \
  --event-ttl 1440 \
  --output none
