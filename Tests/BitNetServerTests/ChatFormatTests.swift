import XCTest
import BitNetInference
@testable import BitNetServer

/// `bitnet chat` and `bitnet serve` render a conversation for a model without chat tokens the same way.
final class ChatFormatTests: XCTestCase {
    func testChatsPlainTemplateIsTheServersPrompt() {
        let turns: [(ChatMessage.Role, String)] = [(.system, "Be brief."), (.user, "Hi"), (.assistant, "Hello."), (.user, "A story?")]
        let chat = BitNetInference.ChatTemplate.plain.render(turns.map { ChatMessage($0.0, $0.1) })
        let served = BitNetServer.ChatTemplate.render(turns.map { .init(role: $0.0.rawValue, content: $0.1) })
        XCTAssertEqual(chat, served)
        XCTAssertEqual(chat, "System: Be brief.\nUser: Hi\nAssistant: Hello.\nUser: A story?\nAssistant:")
    }

    /// A request that leaves the sampling fields out samples with the defaults `generate` and `chat` use.
    func testUnsetSamplingFieldsTakeTheToolsDefaults() throws {
        let r = try CompletionRequest.parse(Data(#"{"prompt":"Once"}"#.utf8), kind: .text, maxTokensLimit: 512)
        let d = GenerationOptions()
        XCTAssertEqual([r.options.temperature, r.options.topP], [d.temperature, d.topP])
        XCTAssertEqual([r.options.topK, r.options.maxTokens], [d.topK, 256])
        XCTAssertEqual([d.temperature, d.topP], [0.8, 0.95])
        XCTAssertEqual(d.topK, 40)
    }
}
