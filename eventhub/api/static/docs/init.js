// Swagger UI over this hub's own /openapi.json. validatorUrl: null keeps it from sending the
// document to swagger.io; nothing here loads from another origin.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: true,
  persistAuthorization: false,
});
