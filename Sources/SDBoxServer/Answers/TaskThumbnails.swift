/// `GET /tasks/{id}/thumbnails`: signed URLs of the task's images' thumbnails (JPEG).
struct TaskThumbnails: Encodable {
    let taskId: String
    let status: String
    let thumbnails: [String]
}
