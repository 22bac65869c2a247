using System.Text;
using System.Text.Json;
using Lutra.Runtime.ChatTemplates;
using Lutra.Tests;

namespace Lutra.Runtime.Tests.ChatTemplates;

/// <summary>
/// Renders llama.cpp's model templates over the shared conversation and compares with the renders made by
/// Python jinja2 in transformers' environment (../shared/templates/*.expected.txt), byte for byte.
/// </summary>
public sealed class ReferenceTemplateTests
{
    private static readonly DateTime FixedNow = new(2025, 2, 20, 12, 0, 0);

    private static (List<ChatTemplateMessage> Messages, bool AddGenerationPrompt, string Bos, string Eos) LoadConversation()
    {
        using var document = JsonDocument.Parse(File.ReadAllBytes(SharedData.Require("templates/conversation.json")));
        var root = document.RootElement;
        var messages = root.GetProperty("messages").EnumerateArray()
            .Select(m => new ChatTemplateMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()))
            .ToList();
        return (messages, root.GetProperty("add_generation_prompt").GetBoolean(),
            root.GetProperty("bos_token").GetString()!, root.GetProperty("eos_token").GetString()!);
    }

    private static string RenderShared(string name)
    {
        var source = File.ReadAllText(SharedData.Require($"templates/{name}.jinja"), Encoding.UTF8);
        var (messages, addGenerationPrompt, bos, eos) = LoadConversation();
        return ChatTemplate.Parse(source).Render(messages, addGenerationPrompt, bos, eos, FixedNow);
    }

    [Theory]
    [InlineData("CohereForAI-c4ai-command-r-plus-tool_use")]
    [InlineData("CohereForAI-c4ai-command-r7b-12-2024-tool_use")]
    [InlineData("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use")]
    [InlineData("NousResearch-Hermes-3-Llama-3.1-8B-tool_use")]
    [InlineData("Qwen-Qwen2.5-7B-Instruct")]
    [InlineData("deepseek-ai-DeepSeek-R1-Distill-Llama-8B")]
    [InlineData("llama-cpp-deepseek-r1")]
    [InlineData("meetkai-functionary-medium-v3.1")]
    [InlineData("meta-llama-Llama-3.1-8B-Instruct")]
    [InlineData("meta-llama-Llama-3.2-3B-Instruct")]
    [InlineData("meta-llama-Llama-3.3-70B-Instruct")]
    [InlineData("mistralai-Mistral-Nemo-Instruct-2407")]
    public void Template_renders_exactly_like_jinja2(string name)
    {
        var expected = File.ReadAllText(SharedData.Require($"templates/{name}.expected.txt"), Encoding.UTF8);
        var actual = RenderShared(name);
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void Every_shared_template_with_an_expected_render_is_covered()
    {
        var folder = SharedData.Require("templates");
        var withExpected = Directory.GetFiles(folder, "*.expected.txt").Length;
        Assert.Equal(12, withExpected);
    }

    [Fact]
    public void Firefunction_fails_because_functions_is_undefined()
    {
        var error = Assert.Throws<ChatTemplateException>(() => RenderShared("fireworks-ai-llama-3-firefunction-v2"));
        Assert.Contains("'functions' is undefined", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Gemma_raises_its_own_system_role_error()
    {
        var error = Assert.Throws<ChatTemplateException>(() => RenderShared("google-gemma-2-2b-it"));
        Assert.Contains("System role not supported", error.Message, StringComparison.Ordinal);
    }
}
