import Foundation

/// Where each kind of object lives in the store, in one place: a task's output images, their thumbnails,
/// a passthrough call's answer, and a user's uploaded input images. Every key starts with its kind and
/// the user it belongs to, so what a user may read is a matter of prefixes.
public enum ObjectKey {
    /// The folder of every user's output images.
    public static let imagesRoot = "images/"
    /// The folder of every user's uploaded input images.
    public static let inputsRoot = "inputs/"

    /// Output image `index` (1-based) of a task: `images/<user>/<taskId>_<index>.<ext>`.
    public static func image(user: String, taskID: String, index: Int, fileExtension: String = "png") -> String {
        images(of: user) + "\(taskID)_\(index).\(fileExtension)"
    }

    /// The JPEG thumbnail of an image: `images/<user>/<name>.png` → `thumbnails/<user>/<name>.jpg`.
    public static func thumbnail(ofImage key: String) -> String {
        let withoutFolder = key.hasPrefix(imagesRoot) ? String(key.dropFirst(imagesRoot.count)) : key
        return "thumbnails/" + (withoutFolder as NSString).deletingPathExtension + ".jpg"
    }

    /// A passthrough call's answer that is not JSON: `responses/<user>/<taskId>`.
    public static func response(user: String, taskID: String) -> String {
        "responses/\(user)/\(taskID)"
    }

    /// An input image a user uploaded: `inputs/<user>/<name>`.
    public static func input(user: String, name: String) -> String {
        inputs(of: user) + name
    }

    /// The prefix of a user's uploaded inputs.
    public static func inputs(of user: String) -> String { inputsRoot + user + "/" }

    /// The prefix of a user's output images.
    public static func images(of user: String) -> String { imagesRoot + user + "/" }
}
