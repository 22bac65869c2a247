using System.Diagnostics;
using System.Text;
using Lutra.Tests;

namespace Lutra.Cli.Tests;

/// <summary>Runs the built <c>lutra chat-template</c> as a process and checks its exact stdout bytes and errors.</summary>
public sealed class ChatTemplateCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lutra-chat-template-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int ExitCode, byte[] Stdout, string Stderr) RunLutra(params string[] args)
    {
        var appHost = Path.Combine(AppContext.BaseDirectory, OperatingSystem.IsWindows() ? "lutra.exe" : "lutra");
        var start = File.Exists(appHost)
            ? new ProcessStartInfo(appHost)
            : new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet") { ArgumentList = { Path.Combine(AppContext.BaseDirectory, "lutra.dll") } };
        foreach (var arg in args)
            start.ArgumentList.Add(arg);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        using var process = Process.Start(start)!;
        using var stdout = new MemoryStream();
        var copy = process.StandardOutput.BaseStream.CopyToAsync(stdout);
        var stderr = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        copy.Wait();
        return (process.ExitCode, stdout.ToArray(), stderr.Result);
    }

    private string WriteFile(string name, string text)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, text, new UTF8Encoding(false));
        return path;
    }

    /// <summary>A metadata-only GGUF v3 file: a chat template (optional) and a three-token vocabulary.</summary>
    private string WriteGguf(string? chatTemplate)
    {
        var path = Path.Combine(_dir, "model.gguf");
        using var w = new BinaryWriter(File.Create(path));
        void Str(string s)
        {
            var bytes = Encoding.UTF8.GetBytes(s);
            w.Write((ulong)bytes.Length);
            w.Write(bytes);
        }
        const uint typeUInt32 = 4, typeString = 8, typeArray = 9;
        w.Write(0x46554747u);
        w.Write(3u);
        w.Write(0UL);
        w.Write(chatTemplate is null ? 3UL : 4UL);
        Str("tokenizer.ggml.tokens");
        w.Write(typeArray);
        w.Write(typeString);
        w.Write(3UL);
        foreach (var token in new[] { "<unk>", "<|begin|>", "<|end|>" })
            Str(token);
        Str("tokenizer.ggml.bos_token_id");
        w.Write(typeUInt32);
        w.Write(1u);
        Str("tokenizer.ggml.eos_token_id");
        w.Write(typeUInt32);
        w.Write(2u);
        if (chatTemplate is not null)
        {
            Str("tokenizer.chat_template");
            w.Write(typeString);
            Str(chatTemplate);
        }
        return path;
    }

    [Fact]
    public void Prints_the_shared_llama_render_byte_for_byte()
    {
        var template = SharedData.Require("templates/meta-llama-Llama-3.2-3B-Instruct.jinja");
        var expected = File.ReadAllBytes(SharedData.Require("templates/meta-llama-Llama-3.2-3B-Instruct.expected.txt"));
        var (exit, stdout, stderr) = RunLutra("chat-template", "--template", template,
            "--messages", SharedData.Require("templates/conversation.json"), "--now", "2025-02-20T12:00:00");
        Assert.Equal("", stderr);
        Assert.Equal(0, exit);
        Assert.Equal(expected, stdout);
    }

    [Fact]
    public void Model_template_and_vocab_tokens_are_used_and_flags_override()
    {
        var model = WriteGguf("{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}{{ eos_token }}");
        var messages = WriteFile("conversation.json", "{\"messages\": [{\"role\": \"user\", \"content\": \"héllo\"}]}");

        var fromModel = RunLutra("chat-template", "-m", model, "--messages", messages);
        Assert.Equal(0, fromModel.ExitCode);
        Assert.Equal("<|begin|>[user]héllo<|end|>", Encoding.UTF8.GetString(fromModel.Stdout));

        var overridden = RunLutra("chat-template", "-m", model, "--messages", messages, "--add-generation-prompt", "--bos-token", "B", "--eos-token", "E");
        Assert.Equal("B[user]héllo[assistant]E", Encoding.UTF8.GetString(overridden.Stdout));
    }

    [Fact]
    public void Conversation_file_supplies_flags_and_tools()
    {
        var template = WriteFile("t.jinja", "{{ bos_token }}|{{ add_generation_prompt }}|{{ tools | map(attribute='name') | join(',') }}|{{ eos_token }}");
        var messages = WriteFile("c.json", "{\"messages\": [], \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"tools\": [{\"name\": \"a\"}, {\"name\": \"b\"}]}");
        var (exit, stdout, _) = RunLutra("chat-template", "--template", template, "--messages", messages);
        Assert.Equal(0, exit);
        Assert.Equal("<s>|True|a,b|</s>", Encoding.UTF8.GetString(stdout));
    }

    [Fact]
    public void Template_errors_become_one_error_line()
    {
        var template = WriteFile("t.jinja", "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}");
        var messages = WriteFile("c.json", "{\"messages\": [{\"role\": \"system\", \"content\": \"x\"}]}");
        var (exit, stdout, stderr) = RunLutra("chat-template", "--template", template, "--messages", messages);
        Assert.Equal(1, exit);
        Assert.Empty(stdout);
        Assert.StartsWith("error: ", stderr, StringComparison.Ordinal);
        Assert.Contains("System role not supported", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Model_without_a_template_is_a_clear_error()
    {
        var model = WriteGguf(chatTemplate: null);
        var messages = WriteFile("c.json", "{\"messages\": []}");
        var (exit, _, stderr) = RunLutra("chat-template", "-m", model, "--messages", messages);
        Assert.Equal(1, exit);
        Assert.Contains("has no tokenizer.chat_template", stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{\"messages\": 3}", "expected an object with a \"messages\" array")]
    [InlineData("{not json", "not valid JSON")]
    public void Bad_conversation_files_are_clear_errors(string json, string message)
    {
        var template = WriteFile("t.jinja", "x");
        var messages = WriteFile("c.json", json);
        var (exit, _, stderr) = RunLutra("chat-template", "--template", template, "--messages", messages);
        Assert.Equal(1, exit);
        Assert.Contains(message, stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Model_and_template_together_are_rejected()
    {
        var template = WriteFile("t.jinja", "x");
        var messages = WriteFile("c.json", "{\"messages\": []}");
        var (exit, _, stderr) = RunLutra("chat-template", "-m", template, "--template", template, "--messages", messages);
        Assert.Equal(1, exit);
        Assert.Contains("exactly one of --model (-m) and --template", stderr, StringComparison.Ordinal);
    }
}
