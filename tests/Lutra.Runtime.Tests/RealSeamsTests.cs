using Lutra.Gguf;
using Lutra.Models;
using Lutra.Runtime.Chat;
using Lutra.Tests;
using Microsoft.Extensions.AI;

namespace Lutra.Runtime.Tests;

/// <summary>The runtime with the real tokenizer and template engine behind its seams (no fakes).</summary>
public sealed class RealSeamsTests : IDisposable
{
    private const string Template =
        "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

    private readonly string _path = Path.Combine(Path.GetTempPath(), $"lutra-chat-{Guid.NewGuid():N}.gguf");

    /// <summary>stories260K with a chat template added to its metadata (the shared file has none).</summary>
    private LutraModel LoadWithTemplate()
    {
        using (var source = GgufFile.Open(SharedData.Model("stories260K.gguf")))
        {
            var writer = GgufWriter.From(source);
            writer.Metadata.Set(ChatTemplateSeam.TemplateKey, GgufValue.From(Template));
            writer.Write(_path);
        }
        return LutraModel.Load(_path);
    }

    public void Dispose() => File.Delete(_path);

    [Fact]
    public void The_model_tokenizer_gives_llama_cpp_ids_for_the_reference_prompt()
    {
        using var model = LutraModel.Load(SharedData.Model("stories260K.gguf"));
        // ../shared/reference/generate/stories260K.greedy.json: prompt_tokens of "Once upon a time".
        Assert.Equal([1, 403, 407, 261, 378], model.Tokenizer.Encode("Once upon a time"));
        Assert.True(model.IsEndOfGeneration(2)); // </s>
        Assert.False(model.IsEndOfGeneration(403));
    }

    [Fact]
    public void The_chat_template_renders_with_the_vocabulary_bos_text()
    {
        using var model = LoadWithTemplate();
        var prompt = model.ChatRenderer.Render([new("system", "You tell stories."), new("user", "Once upon a time")], addGenerationPrompt: true);
        Assert.Equal("<s>system: You tell stories.\nuser: Once upon a time\nassistant:", prompt);
    }

    [Fact]
    public async Task Chat_client_streams_the_same_text_it_returns_whole()
    {
        using var model = LoadWithTemplate();
        using var client = model.AsChatClient(new InferenceOptions { ContextSize = 256 });
        ChatMessage[] conversation = [new(ChatRole.User, "Once upon a time")];
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 24 };
        var whole = await client.GetResponseAsync(conversation, options, TestContext.Current.CancellationToken);
        var streamed = new List<string>();
        await foreach (var update in client.GetStreamingResponseAsync(conversation, options, TestContext.Current.CancellationToken))
            streamed.Add(update.Text);
        Assert.False(string.IsNullOrWhiteSpace(whole.Text));
        Assert.Equal(whole.Text, string.Concat(streamed));
        // The prompt is the rendered template tokenized once, with a single BOS although the template spells it out.
        var promptTokens = model.Tokenizer.Encode("user: Once upon a time\nassistant:");
        Assert.Equal(promptTokens.Length, whole.Usage?.InputTokenCount);
    }
}
