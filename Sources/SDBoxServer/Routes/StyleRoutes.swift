import Appliance
import Hummingbird
import SDBoxCore

/// Prompt styles: `GET /sdapi/v1/prompt-styles` as A1111 lists them, and for admins `GET /admin/styles`
/// and `PUT /admin/styles` (the whole list, `[{name, prompt, negative_prompt}]`), which the Models page
/// edits. They live in the box's `styles.csv` (see ``PromptStyles``).
struct StyleRoutes {
    let styles: PromptStyles

    init(services: Services) {
        styles = PromptStyles(path: DataFolder(services.configuration).styles)
    }

    func register(on router: Router<SDBoxRequestContext>) {
        router.get("/sdapi/v1/prompt-styles") { _, _ in try Response.json(try await styles.load()) }
        router.get("/admin/styles") { _, _ in try Response.json(try await styles.load()) }
        router.put("/admin/styles") { request, _ in
            let body = try await request.jsonBody(limit: 4 << 20)
            let list: [A1111.PromptStyle]
            do {
                list = try body.decode()
            } catch {
                throw APIError(.badRequest, "invalid styles", detail: "the body must be a list of {name, prompt, negative_prompt}")
            }
            try await styles.save(list)
            return try Response.json(try await styles.load())
        }
    }
}
