import Appliance
import Foundation
import Hummingbird
import SDBoxCore

/// sdbox's API as an OpenAPI 3.1 document, served at `/openapi.json`: the original's task API, the
/// A1111-compatible `/sdapi/v1/*`, models, pools, keys, objects and health. Limits in the schemas are the
/// configured ones. A unit test checks that every route the router has is described here.
enum OpenAPIDocument {
    static func make(_ configuration: ServerConfiguration) -> JSONValue {
        let limits = configuration.limits.generation
        var paths: [String: JSONValue] = [:]
        func add(
            _ method: String, _ path: String, _ summary: String, tag: String, body: JSONValue? = nil, rawBody: JSONValue? = nil,
            query: [JSONValue] = [], responses: [String: String] = [:]
        ) {
            var operation: [String: JSONValue] = ["summary": .string(summary), "tags": [.string(tag)]]
            let names = path.split(separator: "/").filter { $0.hasPrefix("{") }.map { String($0.dropFirst().dropLast()) }
            let parameters = names.map { name -> JSONValue in
                ["name": .string(name), "in": "path", "required": true, "schema": ["type": "string", "minLength": 1, "maxLength": 255]]
            } + query
            if !parameters.isEmpty { operation["parameters"] = .array(parameters) }
            if let body { operation["requestBody"] = ["required": true, "content": ["application/json": ["schema": body]]] }
            if let rawBody { operation["requestBody"] = rawBody }
            var answers: [String: JSONValue] = ["200": ["description": "OK", "content": ["application/json": ["schema": ["type": "object"]]]]]
            for (status, description) in responses { answers[status] = ["description": .string(description)] }
            for (status, description) in [("400", "invalid request"), ("401", "API key required or invalid"), ("403", "admin only"), ("404", "not found"), ("429", "rate, queue or quota limit")] where answers[status] == nil {
                answers[status] = ["description": .string(description), "content": ["application/json": ["schema": ["$ref": "#/components/schemas/Error"]]]]
            }
            var item = paths[path]?.objectValue ?? [:]
            item[method] = .object(operation)
            paths[path] = .object(item)
        }
        let generation = generationSchema(limits: limits, img2img: false)
        let img2img = generationSchema(limits: limits, img2img: true)
        let requestType: JSONValue = ["name": "Request-Type", "in": "header", "schema": ["type": "string", "enum": ["sync", "async"]]]
        let taskID: JSONValue = [
            "name": "taskId", "in": "header", "description": "the id the client chooses for its task: the same id again returns that task",
            "schema": ["type": "string", "pattern": "^[0-9A-Za-z_-]{1,64}$"],
        ]
        let anyObject: JSONValue = ["type": "object"]

        // Webhooks (`callback_url` in the body, or an `X-Callback-URL` header) are described in words only, so
        // that request generators never make sdbox call out to URLs they invent.
        let webhook = "; with callback_url (body) or X-Callback-URL (header), the result is POSTed there when the task ends"
        add("post", "/txt2img", "Generate images from a prompt (task API)" + webhook, tag: "tasks", body: generation, query: [requestType, taskID])
        add("post", "/img2img", "Generate images from images (task API)" + webhook, tag: "tasks", body: img2img, query: [requestType, taskID])
        add("get", "/tasks", "List tasks, newest first", tag: "tasks", query: [
            ["name": "limit", "in": "query", "schema": ["type": "integer", "minimum": 1, "maximum": 500]],
            ["name": "state", "in": "query", "schema": ["type": "string"]], ["name": "model", "in": "query", "schema": ["type": "string"]],
            ["name": "user", "in": "query", "schema": ["type": "string"]], ["name": "since", "in": "query", "schema": ["type": "string"]],
            ["name": "before", "in": "query", "schema": ["type": "string"]],
        ])
        add("get", "/tasks/{id}", "A task with its request", tag: "tasks")
        add("get", "/tasks/{id}/result", "A task's result: images, ossUrl, info, parameters", tag: "tasks")
        add("get", "/tasks/{id}/progress", "A task's progress, queue position and ETA", tag: "tasks")
        add("post", "/tasks/{id}/cancellation", "Cancel a queued or running task", tag: "tasks")
        add("get", "/tasks/{id}/thumbnails", "Signed URLs of a task's JPEG thumbnails, one per output image", tag: "tasks")
        add("get", "/tasks/{id}/events", "A task's live progress as Server-Sent Events, ending with its result", tag: "tasks")
        add("get", "/ws", "WebSocket: send {\"subscribe\": [task ids]}, receive their live progress events", tag: "tasks", responses: ["405": "not a WebSocket upgrade"])
        add("post", "/extra_images", "Upscale one image (task API): status, taskId, ossUrl" + webhook, tag: "tasks", body: extrasSchema(limits: limits, batch: false), query: [requestType, taskID])
        add("post", "/options", "Set the caller's options ({\"data\": {...}}), used by all its generations", tag: "tasks", body: [
            "type": "object", "required": ["data"], "properties": ["data": anyObject],
        ])

        for kind in TaskKind.generations {
            add(
                "post", "/sdapi/v1/\(kind.rawValue)", "A1111 \(kind.rawValue): base64 images, parameters, info as a JSON string" + webhook, tag: "a1111",
                body: kind == .img2img ? img2img : generation, query: [requestType]
            )
        }
        add("post", "/sdapi/v1/extra-single-image", "A1111 extras: one image upscaled, {html_info, image}" + webhook, tag: "a1111", body: extrasSchema(limits: limits, batch: false), query: [requestType, taskID])
        add("post", "/sdapi/v1/extra-batch-images", "A1111 extras: images upscaled, {html_info, images}" + webhook, tag: "a1111", body: extrasSchema(limits: limits, batch: true), query: [requestType, taskID])
        for path in [
            "progress", "sd-models", "sd-vae", "loras", "embeddings", "samplers", "schedulers", "upscalers", "scripts", "options", "prompt-styles",
            "latent-upscale-modes", "memory",
        ] {
            add("get", "/sdapi/v1/\(path)", "A1111 \(path)", tag: "a1111")
        }
        let styles: JSONValue = [
            "type": "array",
            "items": ["type": "object", "required": ["name"], "properties": ["name": ["type": "string"], "prompt": ["type": "string"], "negative_prompt": ["type": "string"]]],
        ]
        add("get", "/admin/styles", "The box's prompt styles (styles.csv)", tag: "models")
        add("put", "/admin/styles", "Replace the box's prompt styles", tag: "models", body: styles)
        add("post", "/sdapi/v1/options", "Set the caller's A1111 options (sd_model_checkpoint chooses the default model)", tag: "a1111", body: anyObject)
        for path in ["interrupt", "skip", "refresh-checkpoints", "refresh-vae", "refresh-loras", "refresh-embeddings"] {
            add("post", "/sdapi/v1/\(path)", "A1111 \(path)", tag: "a1111")
        }
        add("post", "/sdapi/v1/reload-checkpoint", "Answers once a worker of the model is warm (X-SD-Model, else the caller's default)", tag: "a1111")
        add("post", "/sdapi/v1/unload-checkpoint", "Stops the idle workers of the model (X-SD-Model, else the caller's default)", tag: "a1111")
        add("post", "/sdapi/v1/png-info", "A PNG's infotext and text chunks", tag: "a1111", body: [
            "type": "object", "required": ["image"], "properties": ["image": ["type": "string", "description": "base64 PNG or data: URI"]],
        ])
        let passthrough: [JSONValue] = [
            requestType, ["name": "Task-Flag", "in": "header", "schema": ["type": "string", "enum": ["true", "false"]]],
            ["name": "X-SD-Model", "in": "header", "schema": ["type": "string"]],
        ]
        for prefix in ["/sdapi/v1", ""] {
            for method in ["get", "post", "put", "patch", "delete"] {
                add(
                    method, "\(prefix)/{path}", "Passthrough: forwarded to a worker of the model (X-SD-Model or stable_diffusion_model), answered as the worker answers" + webhook,
                    tag: "passthrough", body: method == "get" || method == "delete" ? nil : anyObject, query: passthrough,
                    responses: ["502": "the worker could not be reached", "503": "no worker could be started for the model"]
                )
            }
        }

        add("post", "/login", "Sign in with a password: {token, userName, message}; the token goes in the Token header or as a bearer key", tag: "users", body: [
            "type": "object", "required": ["userName", "password"], "properties": ["userName": ["type": "string"], "password": ["type": "string"]],
        ], responses: ["401": "wrong user name or password"])
        add("get", "/admin/users", "Users who sign in with a password (never their hashes)", tag: "users")
        add("post", "/admin/users", "Add a user, or set a user's password and role", tag: "users", body: [
            "type": "object", "required": ["userName", "password"],
            "properties": ["userName": ["type": "string"], "password": ["type": "string", "minLength": 8], "role": ["type": "string", "enum": ["admin", "user"]]],
        ], responses: ["201": "saved"])
        add("delete", "/admin/users/{name}", "Remove a user and end its sessions", tag: "users")
        add("post", "/restart", "Restart every pool's workers; running tasks finish first, queued ones wait (admin)", tag: "pools")
        add("get", "/models", "Models with type, status, hashes", tag: "models", query: [
            ["name": "type", "in": "query", "schema": ["type": "string", "enum": .array(ModelType.allCases.map { .string($0.rawValue) })]],
            ["name": "status", "in": "query", "schema": ["type": "string"]],
        ])
        let modelBody: JSONValue = [
            "type": "object", "required": ["type", "name", "ossPath"],
            "properties": [
                "type": ["type": "string", "enum": .array(ModelType.allCases.map { .string($0.rawValue) })], "name": ["type": "string"],
                "ossPath": ["type": "string", "description": "a key of the object store, a path under the models folder, or an absolute path on the box"],
                "etag": ["type": "string"], "status": ["type": "string"],
            ],
        ]
        let typeQuery: [JSONValue] = [["name": "type", "in": "query", "schema": ["type": "string", "enum": .array(ModelType.allCases.map { .string($0.rawValue) })]]]
        add("post", "/models", "Register a model (the original's; admin): {message}", tag: "models", body: modelBody, responses: ["409": "registered with another file"])
        add("get", "/models/{name}", "One model, deleted ones included (?type= when names repeat across types)", tag: "models", query: typeQuery)
        add("put", "/models/{name}", "Point a registered model at another file (admin); its workers restart on it", tag: "models", body: modelBody, query: typeQuery)
        add("delete", "/models/{name}", "Delete a model; its record stays as deleted (admin; 409 while in use unless ?force=true)", tag: "models", query: typeQuery, responses: ["409": "in use"])
        let binary: JSONValue = ["required": true, "content": ["application/octet-stream": ["schema": ["type": "string", "format": "binary"]]]]
        add(
            "put", "/admin/models/{type}/{name}", "Upload a model file (streamed; ?overwrite=true to replace)", tag: "models", rawBody: binary,
            responses: ["201": "uploaded", "409": "exists", "413": "too large"]
        )
        add("delete", "/admin/models/{type}/{name}", "Delete a model (409 while in use unless ?force=true)", tag: "models", responses: ["409": "in use"])
        add("post", "/admin/models", "Upload a model as multipart/form-data (fields type, file)", tag: "models", responses: ["201": "uploaded"])
        add("post", "/admin/models/register", "Register a model file already on the box", tag: "models", body: [
            "type": "object", "required": ["path"],
            "properties": ["type": ["type": "string"], "path": ["type": "string"], "name": ["type": "string"]],
        ], responses: ["201": "registered"])
        add("post", "/admin/models/install", "Install a model from a link (https URL, Hugging Face owner/repo/file, Civitai link); a background job", tag: "models", body: [
            "type": "object", "required": ["url"],
            "properties": [
                "url": ["type": "string"], "type": ["type": "string"], "name": ["type": "string"], "sha256": ["type": "string"],
                "revision": ["type": "string"], "overwrite": ["type": "boolean"],
            ],
        ], responses: ["202": "install started", "409": "exists"])
        add("get", "/admin/models/installs", "Installs from links with their progress (bytes, speed, time left), newest first", tag: "models")
        add("get", "/admin/models/installs/{id}", "One install from a link", tag: "models")
        add("delete", "/admin/models/installs/{id}", "Cancel an unfinished install (its file removed), or forget a finished one", tag: "models")

        add("get", "/workers", "Workers, GPUs and queues", tag: "pools")
        add("get", "/list/sdapi/functions", "Pools (functions), one per checkpoint", tag: "pools")
        add("post", "/batch_update_sd_resource", "Change pools' settings", tag: "pools", body: [
            "type": "object", "additionalProperties": false,
            "properties": [
                "models": ["type": "array", "items": ["type": "string"]], "minInstances": ["type": "integer", "minimum": 0, "maximum": 1024],
                "maxInstances": ["type": "integer", "minimum": 1, "maximum": 1024], "idleTimeout": ["type": "integer", "minimum": 0],
                "gpuMemorySize": ["type": "integer", "minimum": 0], "timeout": ["type": "integer", "minimum": 1], "image": ["type": "string"],
                "extraArgs": ["type": "string"], "env": ["type": "object", "additionalProperties": ["type": "string"]],
                "cpu": [:], "memorySize": [:], "instanceType": [:], "vpcConfig": [:], "nasConfig": [:], "mountPoints": [:],
            ],
        ])
        add("post", "/del/sd/functions", "Delete pools", tag: "pools", body: [
            "type": "object", "required": ["functions"], "properties": ["functions": ["type": "array", "items": ["type": "string"]]],
        ])

        add("get", "/admin/keys", "API keys (never their secrets)", tag: "keys")
        add("post", "/admin/keys", "Make an API key (shown once)", tag: "keys", body: [
            "type": "object", "required": ["user"],
            "properties": ["user": ["type": "string"], "role": ["type": "string", "enum": ["admin", "user"]]],
        ], responses: ["201": "made"])
        add("delete", "/admin/keys/{id}", "Revoke an API key", tag: "keys")
        add("get", "/admin/workers/remote", "Remote workers (credentials masked), from the configuration or added at run time", tag: "workers")
        add("post", "/admin/workers/remote", "Add a remote A1111-compatible worker, or replace the one added under its name", tag: "workers", body: [
            "type": "object", "required": ["name", "url"],
            "properties": [
                "name": ["type": "string"], "url": ["type": "string"], "gpuMemoryMiB": ["type": "integer"],
                "models": ["type": "array", "items": ["type": "string"]], "headers": ["type": "object"], "basicAuth": ["type": "string"],
                "switchModels": ["type": "boolean"],
            ],
        ], responses: ["201": "added"])
        add("delete", "/admin/workers/remote/{name}", "Remove a remote worker added at run time", tag: "workers")
        let pauseBody: JSONValue = ["type": "object", "properties": ["model": ["type": "string"]]]
        add("get", "/admin/queue", "What is paused, and the tasks waiting per model", tag: "tasks")
        add("post", "/admin/queue/pause", "Pause the queue: the whole box, or one pool with {model}; tasks are kept, none starts", tag: "tasks", body: pauseBody)
        add("post", "/admin/queue/resume", "Resume the queue: every queue, or one pool with {model}", tag: "tasks", body: pauseBody)
        add("post", "/admin/tasks/{id}/front", "Move a queued task to the front of its model's queue", tag: "tasks")
        add("get", "/admin/usage", "What finished tasks used (tasks, images, pixels x steps, worker seconds) by user, API key, model or day; CSV with Accept: text/csv", tag: "tasks", query: [
            ["name": "from", "in": "query", "schema": ["type": "string"]], ["name": "to", "in": "query", "schema": ["type": "string"]],
            ["name": "user", "in": "query", "schema": ["type": "string"]], ["name": "key", "in": "query", "schema": ["type": "string"]],
            ["name": "groupBy", "in": "query", "schema": ["type": "string", "enum": ["user", "key", "model", "day"]]],
        ])
        let limit: (String) -> JSONValue = { type in ["type": [.string(type), "null"], "minimum": 0, "maximum": .integer(Int64(Quota.maxLimit))] }
        let quotaBody: JSONValue = [
            "type": "object", "additionalProperties": false, "minProperties": 1,
            "properties": [
                "imagesPerDay": limit("integer"), "imagesPerMonth": limit("integer"), "workerSecondsPerDay": limit("number"), "workerSecondsPerMonth": limit("number"),
            ],
        ]
        add("get", "/admin/quotas", "Quotas per user and API key, with what each used in the current UTC day and month", tag: "keys")
        add("put", "/admin/quotas/user/{name}", "Set a user's quota: images and worker seconds per UTC day and month (absent or null: no limit)", tag: "keys", body: quotaBody)
        add("put", "/admin/quotas/key/{id}", "Set an API key's quota: images and worker seconds per UTC day and month (absent or null: no limit)", tag: "keys", body: quotaBody, responses: ["404": "no such key"])
        add("delete", "/admin/quotas/user/{name}", "Remove a user's quota", tag: "keys", responses: ["404": "no quota"])
        add("delete", "/admin/quotas/key/{id}", "Remove an API key's quota", tag: "keys", responses: ["404": "no quota"])

        add("get", "/objects/{key}", "An object by its signed URL", tag: "objects", query: [
            ["name": "expires", "in": "query", "required": true, "schema": ["type": "integer"]],
            ["name": "sig", "in": "query", "required": true, "schema": ["type": "string"]],
        ], responses: ["206": "a byte range", "304": "not modified", "403": "signature invalid or expired", "416": "range not satisfiable"])
        let image: JSONValue = ["type": "string", "format": "binary"]
        add(
            "put", "/objects/{key}", "Store an input image (PNG, JPEG, WebP) under inputs/<user>/...", tag: "objects",
            rawBody: ["required": true, "content": ["image/png": ["schema": image], "image/jpeg": ["schema": image], "image/webp": ["schema": image]]],
            responses: ["201": "stored: {key}", "413": "too large", "507": "disk full"]
        )
        add(
            "post", "/objects", "Store an input image sent as multipart/form-data (part file, optional key)", tag: "objects",
            rawBody: ["required": true, "content": ["multipart/form-data": ["schema": [
                "type": "object", "required": ["file"], "properties": ["file": image, "key": ["type": "string"]],
            ]]]],
            responses: ["201": "stored: {key}", "413": "too large", "415": "not multipart/form-data", "507": "disk full"]
        )
        add("get", "/healthz", "The process is up", tag: "health")
        add("get", "/readyz", "The store and the scheduler are ready", tag: "health", responses: ["503": "not ready"])
        add("get", "/metrics", "Prometheus metrics", tag: "health")
        add("get", "/openapi.json", "This document", tag: "health")

        return [
            "openapi": "3.1.0",
            "info": [
                "title": "sdbox", "version": "1",
                "description": "A Stable Diffusion API appliance: the A1111 API and the serverless edition's task API over per-model worker pools.",
            ],
            "paths": .object(paths),
            "components": [
                "securitySchemes": [
                    "bearer": ["type": "http", "scheme": "bearer"], "apiKey": ["type": "apiKey", "in": "header", "name": "X-API-Key"],
                    "token": ["type": "apiKey", "in": "header", "name": "Token"],
                ],
                "schemas": [
                    "Error": [
                        "type": "object", "required": ["error", "detail", "message", "code"],
                        "properties": [
                            "error": ["type": "string"], "detail": ["type": "string"], "message": ["type": "string"],
                            "code": ["type": "integer"], "field": ["type": "string"],
                        ],
                    ]
                ],
            ],
            "security": [["bearer": []], ["apiKey": []], ["token": []]],
        ]
    }

    /// The body of A1111's extras requests with sdbox's limits; images as base64 or stored keys.
    static func extrasSchema(limits: GenerationLimits, batch: Bool) -> JSONValue {
        var properties: [String: JSONValue] = [
            "resize_mode": ["type": "integer", "enum": [0, 1]],
            "upscaling_resize": ["type": "number", "minimum": 1, "maximum": 8],
            "upscaling_resize_w": ["type": "integer", "minimum": 1, "maximum": .integer(Int64(limits.maxSide))],
            "upscaling_resize_h": ["type": "integer", "minimum": 1, "maximum": .integer(Int64(limits.maxSide))],
            "upscaling_crop": ["type": "boolean"], "upscaler_1": ["type": "string"], "upscaler_2": ["type": "string"],
            "extras_upscaler_2_visibility": ["type": "number"], "gfpgan_visibility": ["type": "number"],
            "codeformer_visibility": ["type": "number"], "codeformer_weight": ["type": "number"],
            "show_extras_results": ["type": "boolean"], "upscale_first": ["type": "boolean"],
            "stable_diffusion_model": ["type": "string"], "priority": ["type": "integer", "minimum": -100, "maximum": 100],
        ]
        if batch {
            properties["imageList"] = [
                "type": "array", "minItems": 1, "maxItems": .integer(Int64(limits.maxImages)),
                "items": ["type": "object", "required": ["data"], "properties": ["data": ["type": "string", "minLength": 1], "name": ["type": "string"]]],
            ]
        } else {
            properties["image"] = ["type": "string", "minLength": 1]
        }
        return ["type": "object", "properties": .object(properties), "required": [batch ? "imageList" : "image"]]
    }

    /// The body of txt2img/img2img: A1111's common fields with sdbox's limits, plus sdbox's own fields.
    static func generationSchema(limits: GenerationLimits, img2img: Bool) -> JSONValue {
        var properties: [String: JSONValue] = [
            "prompt": ["type": "string"], "negative_prompt": ["type": "string"],
            "stable_diffusion_model": ["type": "string"], "sd_vae": ["type": "string"],
            "sampler_name": ["type": "string"], "scheduler": ["type": "string"],
            "steps": ["type": "integer", "minimum": 1, "maximum": .integer(Int64(limits.maxSteps))],
            "width": ["type": "integer", "minimum": 64, "maximum": .integer(Int64(limits.maxSide))],
            "height": ["type": "integer", "minimum": 64, "maximum": .integer(Int64(limits.maxSide))],
            "batch_size": ["type": "integer", "minimum": 1, "maximum": .integer(Int64(limits.maxImages))],
            "n_iter": ["type": "integer", "minimum": 1, "maximum": .integer(Int64(limits.maxImages))],
            "cfg_scale": ["type": "number"], "seed": ["type": "integer"], "subseed": ["type": "integer"],
            "priority": ["type": "integer", "minimum": -100, "maximum": 100],
            "override_settings": ["type": "object"],
        ]
        var required: [JSONValue] = []
        if img2img {
            properties["init_images"] = ["type": "array", "minItems": 1, "items": ["type": "string"]]
            properties["mask"] = ["type": "string"]
            properties["denoising_strength"] = ["type": "number", "minimum": 0, "maximum": 1]
            required.append("init_images")
        }
        return ["type": "object", "properties": .object(properties), "required": .array(required)]
    }
}
