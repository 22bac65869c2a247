using Lutra.Gguf;
using Lutra.Models;
using Lutra.Runtime.Chat;
using Lutra.Runtime.Tokenization;
using Microsoft.Extensions.AI;

namespace Lutra.Runtime;

/// <summary>
/// A loaded GGUF model: weights stay memory-mapped and shared; each <see cref="CreateContext"/> gets its own KV
/// cache and buffers, so several contexts can generate concurrently (one thread per context).
/// </summary>
public sealed class LutraModel : IDisposable
{
    private readonly LutraModelOptions _options;
    private readonly Lazy<ITextTokenizer> _tokenizer;
    private readonly Lazy<IChatPromptRenderer> _chatRenderer;
    private readonly HashSet<int> _endOfGeneration = [];
    private readonly Lazy<ITextTokenizer?> _endOfGenerationSource;

    private LutraModel(Transformer transformer, string path, LutraModelOptions options)
    {
        Transformer = transformer;
        _options = options;
        Name = transformer.Metadata.GetString("general.name") ?? Path.GetFileNameWithoutExtension(path);
        _tokenizer = new(() => _options.Tokenizer ?? TokenizerSeam.FromGguf(Metadata));
        _chatRenderer = new(() => _options.ChatRenderer ?? ChatTemplateSeam.FromGguf(Metadata, Tokenizer));
        _endOfGenerationSource = new(() =>
        {
            try
            {
                return Tokenizer;
            }
            catch (NotSupportedException)
            {
                return null; // no usable vocabulary: fall back to the metadata ids below
            }
        });
        foreach (var key in (string[])["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"])
        {
            if (Metadata.GetInteger(key) is long id && id >= 0 && id < VocabSize)
                _endOfGeneration.Add((int)id);
        }
    }

    public Transformer Transformer { get; }

    public GgufMetadata Metadata => Transformer.Metadata;

    public string Name { get; }

    public int VocabSize => Transformer.VocabSize;

    /// <summary>The model's tokenizer; NotSupportedException when this build cannot tokenize its vocabulary.</summary>
    public ITextTokenizer Tokenizer => _tokenizer.Value;

    public IChatPromptRenderer ChatRenderer => _chatRenderer.Value;

    public static LutraModel Load(string path, LutraModelOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        options ??= new LutraModelOptions();
        return new LutraModel(Transformer.Load(path, options.Kernels), path, options);
    }

    /// <summary>
    /// True for ids that end a generation: the tokenizer decides (EOS, EOT, EOM and the end-of-turn tokens it
    /// recognises by text); a model without a usable vocabulary falls back to EOS/EOT/EOM from the metadata.
    /// </summary>
    public bool IsEndOfGeneration(int tokenId) =>
        _endOfGenerationSource.Value?.IsEndOfGeneration(tokenId) ?? _endOfGeneration.Contains(tokenId);

    public LutraContext CreateContext(InferenceOptions? options = null) => new(this, options ?? new InferenceOptions());

    /// <summary>An <see cref="IChatClient"/> over a context of its own.</summary>
    public IChatClient AsChatClient(InferenceOptions? options = null) => new LutraChatClient(this, options);

    public void Dispose() => Transformer.Dispose();
}
