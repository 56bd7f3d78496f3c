// The API documentation page (/docs): Swagger UI, served from this package, on the service's own schema.
// No validator badge (it would send the schema's address elsewhere) and nothing loaded from another origin.
"use strict";

(() => {
  const root = document.getElementById("swagger-ui");
  window.ui = window.SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    deepLinking: true,
    validatorUrl: null,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
})();
